import Foundation
import XferProtocol

@testable import XferClientSide
@testable import XferServerSide
@testable import XferTransport

/// What the store contract tests need from an `UploadStore` implementation besides the protocol: stores that share
/// one backing (as servers on one directory do) and a look behind the store's back.
protocol UploadStoreFixture {
    /// `count` stores on the same backing, as `count` server processes on one `--dir`, each waiting briefly for
    /// a busy upload.
    func makeStores(_ count: Int) -> [any UploadStore]
    /// Appends `bytes` to the partial data of upload `id` directly, as a write cut short by a crash leaves it.
    func tearWrite(upload id: String, bytes: [UInt8]) throws
    /// The bytes saved under `name`, if any.
    func saved(_ name: String) -> [UInt8]?
    /// Saves `bytes` under `name` directly, as an earlier file of that name.
    func place(_ name: String, bytes: [UInt8]) throws
    /// Makes the partial upload `id` look idle for a long time.
    func age(upload id: String) throws
}

/// The implementations the contract runs against.
enum UploadStoreKind: String, CaseIterable, CustomStringConvertible {
    /// `LocalUploadStore` on a temporary directory.
    case local

    var description: String { self.rawValue }

    func makeFixture() throws -> any UploadStoreFixture {
        switch self {
        case .local: return try LocalUploadStoreFixture()
        }
    }
}

/// `LocalUploadStore`s on one temporary directory.
struct LocalUploadStoreFixture: UploadStoreFixture {
    let directory: String

    init() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("xfer-contract-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        self.directory = url.path
    }

    func makeStores(_ count: Int) -> [any UploadStore] {
        (0..<count).map { _ in LocalUploadStore(directory: self.directory, maxFileSize: 1 << 30, lockWait: 0.3) }
    }

    func tearWrite(upload id: String, bytes: [UInt8]) throws {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: "\(self.directory)/.xfer-partial/\(id).part"))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(bytes))
        try handle.close()
    }

    func saved(_ name: String) -> [UInt8]? {
        FileManager.default.contents(atPath: "\(self.directory)/\(name)").map { Array($0) }
    }

    func place(_ name: String, bytes: [UInt8]) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: "\(self.directory)/\(name)"))
    }

    func age(upload id: String) throws {
        let old = Date(timeIntervalSinceNow: -30 * 86400)
        for suffix in [".part", ".json"] {
            let path = "\(self.directory)/.xfer-partial/\(id)\(suffix)"
            if FileManager.default.fileExists(atPath: path) {
                try FileManager.default.setAttributes([.modificationDate: old], ofItemAtPath: path)
            }
        }
    }
}
