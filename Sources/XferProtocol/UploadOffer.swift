/// What a client said about an upload (the fields of an `offer` message), checked and with a safe name.
public struct UploadOffer: Sendable, Equatable {
    /// What the upload reads from: it decides nothing on the server, but a changed kind is a different upload.
    public enum Kind: String, Sendable, Equatable {
        /// A regular file of known size (wire value `file`).
        case file
        /// A byte stream such as stdin, whose size may be unknown (wire value `stream`).
        case stream
    }

    /// The smallest block size accepted, in raw bytes.
    public static let minBlockSize = 4096
    /// The block size clients use unless told otherwise (1 MiB; the server's buffer pool is sized for it). 1 MiB
    /// measured best here: large enough that per-frame costs vanish, small enough that a resume repeats little
    /// and memory stays low.
    public static let defaultBlockSize = 1 << 20

    /// The stable upload id (16-64 lowercase hex digits) the client reuses when it resumes.
    public var id: String
    /// The safe file name (see `SafeFileName`).
    public var name: String
    /// Total size in bytes, or nil for a stream of unknown length.
    public var size: UInt64?
    /// Raw bytes per block (the last one may be shorter).
    public var blockSize: Int
    /// The source's modification time as the client saw it (a changed file gets a new upload).
    public var mtime: String
    /// A file or a stream.
    public var kind: Kind

    /// An offer from values already checked.
    public init(id: String, name: String, size: UInt64?, blockSize: Int, mtime: String, kind: Kind) {
        self.id = id
        self.name = name
        self.size = size
        self.blockSize = blockSize
        self.mtime = mtime
        self.kind = kind
    }

    /// Parses and checks the fields of an `offer` message (untrusted input).
    ///
    /// - Parameters:
    ///   - fields: `upload`, `name`, `block_size`, `size` (absent for a stream of unknown length), `mtime`, `kind`.
    ///   - maxBlockSize: the largest block accepted, in raw bytes.
    ///   - maxFileSize: the largest upload accepted (`--max-file-size`); a larger declared size is refused here.
    /// - Throws: `protocol_error` for a bad id or block size, `bad_name` for a name that cannot be made safe,
    ///   `file_too_large` for a declared size over `maxFileSize`.
    public init(fields: [String: String], maxBlockSize: Int, maxFileSize: UInt64) throws(XferError) {
        guard let id = fields["upload"], Self.isValidID(id) else {
            throw XferError(.protocolError, "offer needs an upload id of 16-64 lowercase hex digits")
        }
        let name = try SafeFileName.sanitize(fields["name"] ?? "")
        guard let blockSize = fields["block_size"].flatMap(Self.decimalInt), blockSize >= Self.minBlockSize,
            blockSize <= maxBlockSize
        else {
            throw XferError(.protocolError, "offer needs block_size between 4096 and \(maxBlockSize)")
        }
        // Only an absent size means a stream of unknown length: a size that is there must be a plain decimal.
        var size: UInt64?
        if let text = fields["size"] {
            guard let parsed = Self.decimal(text) else {
                throw XferError(
                    .protocolError,
                    "offer size \"\(text.prefix(32))\" is not a decimal number of bytes (leave size out for a stream of unknown length)"
                )
            }
            size = parsed
        }
        if let size, size > maxFileSize {
            throw XferError(
                .fileTooLarge,
                "\(name) is \(size) bytes, over the server's limit of \(maxFileSize) (--max-file-size)"
            )
        }
        self.init(
            id: id,
            name: name,
            size: size,
            blockSize: blockSize,
            mtime: fields["mtime"] ?? "",
            kind: fields["kind"] == Kind.stream.rawValue ? .stream : .file
        )
    }

    /// The offer as the fields of an `offer` message; `init(fields:maxBlockSize:maxFileSize:)` reads them back.
    public var fields: [String: String] {
        var fields = [
            "upload": self.id,
            "name": self.name,
            "block_size": String(self.blockSize),
            "mtime": self.mtime,
            "kind": self.kind.rawValue,
        ]
        if let size = self.size { fields["size"] = String(size) }
        return fields
    }

    /// A canonical decimal number (ASCII digits, no sign, no leading zero, no spaces) that fits in a `UInt64`;
    /// nil for anything else (`-0`, `+5`, `1e3`, `0x10`, `" 5"`, `5.0`, fullwidth digits, overflow, empty).
    public static func decimal(_ text: String) -> UInt64? {
        let utf8 = text.utf8
        guard let first = utf8.first, utf8.count <= 20,
            utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
            first != UInt8(ascii: "0") || utf8.count == 1
        else { return nil }
        return UInt64(text)
    }

    /// `decimal(_:)` as an `Int`, or nil when it does not fit.
    static func decimalInt(_ text: String) -> Int? {
        Self.decimal(text).flatMap { Int(exactly: $0) }
    }

    /// Whether `id` is 16-64 lowercase hex digits (it names files in the store, so nothing else gets through).
    public static func isValidID(_ id: String) -> Bool {
        id.utf8.count >= 16 && id.utf8.count <= 64
            && id.utf8.allSatisfy {
                (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0)
                    || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0)
            }
    }
}
