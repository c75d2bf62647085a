import Foundation
import XferProtocol

/// The JSON sidecar next to a partial upload: what it is and how much of it is verified.
struct Sidecar: Codable, Equatable {
    var version = 1
    var upload: String
    var name: String
    var size: UInt64?
    var blockSize: Int
    var mtime: String
    var kind: String
    var offset: UInt64
    var updated: Double

    enum CodingKeys: String, CodingKey {
        case version, upload, name, size, mtime, kind, offset, updated
        case blockSize = "block_size"
    }

    /// The sidecar of `offer` with `offset` bytes verified, updated now.
    init(offer: UploadOffer, offset: UInt64) {
        self.upload = offer.id
        self.name = offer.name
        self.size = offer.size
        self.blockSize = offer.blockSize
        self.mtime = offer.mtime
        self.kind = offer.kind.rawValue
        self.offset = offset
        self.updated = Date().timeIntervalSince1970
    }

    /// Whether the partial data was written for `offer` (any change means a different upload: start over).
    func matches(_ offer: UploadOffer) -> Bool {
        self.upload == offer.id && self.name == offer.name && self.size == offer.size
            && self.blockSize == offer.blockSize && self.mtime == offer.mtime && self.kind == offer.kind.rawValue
    }

    static func load(path: String) -> Sidecar? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return try? JSONDecoder().decode(Sidecar.self, from: data)
    }
}
