import NIOCore

/// A control message of the `xfer.v1` subprotocol, carried in one binary WebSocket frame.
///
/// Every frame starts with the protocol version byte (`WireMessage.version`) and a type byte; the layout of
/// each type is in xfer-protocol(7) and pinned byte for byte by the tests. Integers are big-endian (network
/// order). Text messages themselves travel as WebSocket text frames, not as `WireMessage`s: the n-th text frame
/// a client sends after `hello` is message number n.
public enum WireMessage: Equatable, Sendable {
    /// First frame from an `xfer` client: string fields such as `timezone`, `role`, `name`, `to`.
    case hello([String: String])
    /// The server accepted `hello`: string fields such as `client` (the id) and `server` (version).
    case welcome([String: String])
    /// The outcome of one text message.
    case status(Status)
    /// Messages `first...last` were all emitted by the server and not relayed: a compact run of `ok` statuses.
    case ack(first: UInt64, last: UInt64)
    /// Text for a listener from `from`; `seq` numbers texts per listener name, starting at 1.
    case deliver(seq: UInt64, from: String, text: String)
    /// Texts `since + 1 ..< since + 1 + count` of a resuming listener's name are no longer held: they were dropped
    /// by the hold limits while it was away. Sent before the texts that are still held.
    case missed(since: UInt64, count: UInt64)
    /// The sender is about to close because of `code`; `message` says why and what to do.
    case error(code: String, message: String)
    /// An upload's description (client to server): `upload` (id), `name`, `size` (absent for a stream),
    /// `block_size`, `mtime`, `kind` (`file` or `stream`).
    case offer([String: String])
    /// The server takes the upload; the client sends from `offset`, the bytes it has verified already.
    case accept(offset: UInt64)
    /// One block of an upload.
    case block(Block)
    /// Every byte before `offset` is verified and written (cumulative).
    case blockAck(offset: UInt64)
    /// The block at `offset` failed verification; blocks after it are dropped until it arrives again.
    case blockNack(offset: UInt64, reason: String)
    /// The client sent everything: the whole upload is `size` bytes with this SHA-256.
    case finish(size: UInt64, sha256: [UInt8])
    /// The server verified and saved the upload as `name` (relative to its directory).
    case saved(size: UInt64, sha256: [UInt8], name: String)

    /// The protocol version this build speaks; also the first byte of every binary frame.
    public static let version: UInt8 = 1
    /// The WebSocket subprotocol name negotiated with `Sec-WebSocket-Protocol`.
    public static let subprotocol = "xfer.v1"

    /// The outcome of one text message, as the server reports it.
    public struct Status: Equatable, Sendable {
        /// The message number on its connection (1-based).
        public var id: UInt64
        /// Whether the server emitted (or relayed) the message.
        public var ok: Bool
        /// Whether the message was addressed to listeners (then `delivered` and `held` count them).
        public var relayed: Bool
        /// Listeners that received the message.
        public var delivered: UInt32
        /// Copies held for listeners that are reconnecting.
        public var held: UInt32
        /// An `XferError.Code` raw value when `ok` is false, else empty.
        public var code: String
        /// Why it failed, when `ok` is false, else empty.
        public var reason: String

        public init(
            id: UInt64,
            ok: Bool,
            relayed: Bool = false,
            delivered: UInt32 = 0,
            held: UInt32 = 0,
            code: String = "",
            reason: String = ""
        ) {
            self.id = id
            self.ok = ok
            self.relayed = relayed
            self.delivered = delivered
            self.held = held
            self.code = code
            self.reason = reason
        }
    }

    /// One upload block as it travels.
    public struct Block: Equatable, Sendable {
        /// Where the block's raw bytes start in the upload.
        public var offset: UInt64
        /// The block's raw (uncompressed) length.
        public var rawLength: UInt32
        /// CRC-32 of the raw bytes, verified before anything touches disk.
        public var crc32: UInt32
        /// How `payload` encodes the raw bytes.
        public var encoding: BlockEncoding
        /// The encoded bytes.
        public var payload: ByteBuffer

        public init(offset: UInt64, rawLength: UInt32, crc32: UInt32, encoding: BlockEncoding, payload: ByteBuffer) {
            self.offset = offset
            self.rawLength = rawLength
            self.crc32 = crc32
            self.encoding = encoding
            self.payload = payload
        }

        /// Bytes before the payload in a block frame: version, type, offset, length, crc, encoding.
        public static let headerSize = 2 + 8 + 4 + 4 + 1
    }

    /// Type bytes, the second byte of every frame.
    enum TypeByte: UInt8 {
        case hello = 0x01
        case welcome = 0x02
        case status = 0x03
        case ack = 0x04
        case deliver = 0x05
        case missed = 0x06
        case offer = 0x10
        case accept = 0x11
        case block = 0x12
        case blockAck = 0x13
        case blockNack = 0x14
        case finish = 0x15
        case saved = 0x16
        case error = 0x7F
    }

    /// Limits the decoder enforces on untrusted input.
    public struct Limits: Sendable {
        /// Most fields in a hello or welcome; 32 leaves room for future fields and stops hash flooding.
        public var maxFields: Int
        /// Longest key or value in a hello or welcome, in bytes; 1 KiB fits any name or version string.
        public var maxFieldLength: Int

        public init(maxFields: Int = 32, maxFieldLength: Int = 1024) {
            self.maxFields = maxFields
            self.maxFieldLength = maxFieldLength
        }
    }

    /// Appends this message's frame payload to `buffer`.
    public func encode(into buffer: inout ByteBuffer) {
        if case .block = self {
            // writeBlockHeader writes the version byte itself.
        } else {
            buffer.writeInteger(Self.version)
        }
        switch self {
        case .hello(let fields):
            buffer.writeInteger(TypeByte.hello.rawValue)
            Self.writeFields(fields, into: &buffer)
        case .welcome(let fields):
            buffer.writeInteger(TypeByte.welcome.rawValue)
            Self.writeFields(fields, into: &buffer)
        case .status(let status):
            buffer.writeInteger(TypeByte.status.rawValue)
            buffer.writeInteger(status.id)
            buffer.writeInteger(UInt8((status.ok ? 1 : 0) | (status.relayed ? 2 : 0)))
            buffer.writeInteger(status.delivered)
            buffer.writeInteger(status.held)
            Self.writeShortString(status.code, into: &buffer)
            Self.writeShortString(status.reason, into: &buffer)
        case .ack(let first, let last):
            buffer.writeInteger(TypeByte.ack.rawValue)
            buffer.writeInteger(first)
            buffer.writeInteger(last)
        case .deliver(let seq, let from, let text):
            buffer.writeInteger(TypeByte.deliver.rawValue)
            buffer.writeInteger(seq)
            Self.writeShortString(from, into: &buffer)
            buffer.writeString(text)
        case .missed(let since, let count):
            buffer.writeInteger(TypeByte.missed.rawValue)
            buffer.writeInteger(since)
            buffer.writeInteger(count)
        case .error(let code, let message):
            buffer.writeInteger(TypeByte.error.rawValue)
            Self.writeShortString(code, into: &buffer)
            buffer.writeString(message)
        case .offer(let fields):
            buffer.writeInteger(TypeByte.offer.rawValue)
            Self.writeFields(fields, into: &buffer)
        case .accept(let offset):
            buffer.writeInteger(TypeByte.accept.rawValue)
            buffer.writeInteger(offset)
        case .block(let block):
            Self.writeBlockHeader(block, into: &buffer)
            var payload = block.payload
            buffer.writeBuffer(&payload)
        case .blockAck(let offset):
            buffer.writeInteger(TypeByte.blockAck.rawValue)
            buffer.writeInteger(offset)
        case .blockNack(let offset, let reason):
            buffer.writeInteger(TypeByte.blockNack.rawValue)
            buffer.writeInteger(offset)
            buffer.writeString(reason)
        case .finish(let size, let sha256):
            buffer.writeInteger(TypeByte.finish.rawValue)
            buffer.writeInteger(size)
            buffer.writeBytes(sha256)
        case .saved(let size, let sha256, let name):
            buffer.writeInteger(TypeByte.saved.rawValue)
            buffer.writeInteger(size)
            buffer.writeBytes(sha256)
            buffer.writeString(name)
        }
    }

    /// Writes everything of a block frame but its payload (version byte included), so that a sender can encode
    /// the payload straight after it in the same buffer.
    public static func writeBlockHeader(_ block: Block, into buffer: inout ByteBuffer) {
        buffer.writeInteger(Self.version)
        buffer.writeInteger(TypeByte.block.rawValue)
        buffer.writeInteger(block.offset)
        buffer.writeInteger(block.rawLength)
        buffer.writeInteger(block.crc32)
        buffer.writeInteger(block.encoding.rawValue)
    }

    /// This message as a new buffer.
    public func encoded(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 32)
        self.encode(into: &buffer)
        return buffer
    }

    /// Decodes one whole frame payload. Throws `protocol_error` for anything malformed, truncated, with trailing
    /// bytes, or of another version.
    public static func decode(_ frame: ByteBuffer, limits: Limits = Limits()) throws(XferError) -> WireMessage {
        var buffer = frame
        guard let version = buffer.readInteger(as: UInt8.self), let typeByte = buffer.readInteger(as: UInt8.self)
        else { throw XferError(.protocolError, "binary frame too short: a frame needs a version and a type byte") }
        guard version == Self.version else {
            throw XferError(
                .protocolError,
                "peer speaks xfer protocol version \(version), this build speaks \(Self.version): upgrade the older side"
            )
        }
        guard let type = TypeByte(rawValue: typeByte) else {
            throw XferError(.protocolError, "unknown message type 0x\(String(typeByte, radix: 16))")
        }
        let message: WireMessage
        switch type {
        case .hello:
            message = .hello(try readFields(&buffer, limits: limits))
        case .welcome:
            message = .welcome(try readFields(&buffer, limits: limits))
        case .status:
            guard let id = buffer.readInteger(as: UInt64.self), let flags = buffer.readInteger(as: UInt8.self),
                let delivered = buffer.readInteger(as: UInt32.self), let held = buffer.readInteger(as: UInt32.self)
            else { throw truncated("status") }
            let code = try readShortString(&buffer, what: "status")
            let reason = try readShortString(&buffer, what: "status")
            message = .status(
                Status(
                    id: id,
                    ok: flags & 1 != 0,
                    relayed: flags & 2 != 0,
                    delivered: delivered,
                    held: held,
                    code: code,
                    reason: reason
                )
            )
        case .ack:
            guard let first = buffer.readInteger(as: UInt64.self), let last = buffer.readInteger(as: UInt64.self)
            else { throw truncated("ack") }
            guard first <= last, first > 0 else {
                throw XferError(.protocolError, "ack range \(first)...\(last) is empty")
            }
            message = .ack(first: first, last: last)
        case .deliver:
            guard let seq = buffer.readInteger(as: UInt64.self) else { throw truncated("deliver") }
            let from = try readShortString(&buffer, what: "deliver")
            message = .deliver(seq: seq, from: from, text: try readRestAsUTF8(&buffer, what: "deliver"))
        case .missed:
            guard let since = buffer.readInteger(as: UInt64.self), let count = buffer.readInteger(as: UInt64.self)
            else { throw truncated("missed") }
            message = .missed(since: since, count: count)
        case .error:
            let code = try readShortString(&buffer, what: "error")
            message = .error(code: code, message: try readRestAsUTF8(&buffer, what: "error"))
        case .offer:
            message = .offer(try readFields(&buffer, limits: limits))
        case .accept:
            guard let offset = buffer.readInteger(as: UInt64.self) else { throw truncated("accept") }
            message = .accept(offset: offset)
        case .block:
            guard let offset = buffer.readInteger(as: UInt64.self), let rawLength = buffer.readInteger(as: UInt32.self),
                let crc = buffer.readInteger(as: UInt32.self), let encodingByte = buffer.readInteger(as: UInt8.self)
            else { throw truncated("block") }
            guard let encoding = BlockEncoding(rawValue: encodingByte) else {
                throw XferError(.protocolError, "block at offset \(offset) has unknown encoding \(encodingByte)")
            }
            let payload = buffer.readSlice(length: buffer.readableBytes)!
            message = .block(
                Block(offset: offset, rawLength: rawLength, crc32: crc, encoding: encoding, payload: payload)
            )
        case .blockAck:
            guard let offset = buffer.readInteger(as: UInt64.self) else { throw truncated("block_ack") }
            message = .blockAck(offset: offset)
        case .blockNack:
            guard let offset = buffer.readInteger(as: UInt64.self) else { throw truncated("block_nack") }
            message = .blockNack(offset: offset, reason: try readRestAsUTF8(&buffer, what: "block_nack"))
        case .finish:
            guard let size = buffer.readInteger(as: UInt64.self), let sha = buffer.readBytes(length: 32) else {
                throw truncated("finish")
            }
            message = .finish(size: size, sha256: sha)
        case .saved:
            guard let size = buffer.readInteger(as: UInt64.self), let sha = buffer.readBytes(length: 32) else {
                throw truncated("saved")
            }
            message = .saved(size: size, sha256: sha, name: try readRestAsUTF8(&buffer, what: "saved"))
        }
        if buffer.readableBytes != 0 {
            throw XferError(.protocolError, "\(buffer.readableBytes) unexpected bytes after a \(type) message")
        }
        return message
    }

    private static func truncated(_ what: String) -> XferError {
        XferError(.protocolError, "\(what) message is truncated")
    }

    private static func writeShortString(_ string: String, into buffer: inout ByteBuffer) {
        var string = string
        let count = string.withUTF8 { min($0.count, Int(UInt16.max)) }
        buffer.writeInteger(UInt16(count))
        _ = string.withUTF8 {
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer($0)[0..<count]))
        }
    }

    private static func readShortString(_ buffer: inout ByteBuffer, what: String) throws(XferError) -> String {
        guard let length = buffer.readInteger(as: UInt16.self), let bytes = buffer.readBytes(length: Int(length))
        else { throw truncated(what) }
        guard let string = String(validating: bytes, as: UTF8.self) else {
            throw XferError(.invalidUTF8, "\(what) message holds a string that is not UTF-8")
        }
        return string
    }

    private static func readRestAsUTF8(_ buffer: inout ByteBuffer, what: String) throws(XferError) -> String {
        let view = buffer.readableBytesView
        guard let string = String(validating: view, as: UTF8.self) else {
            throw XferError(.invalidUTF8, "\(what) message holds text that is not UTF-8")
        }
        buffer.moveReaderIndex(forwardBy: view.count)
        return string
    }

    /// Fields are written sorted by key so that the encoding is deterministic.
    private static func writeFields(_ fields: [String: String], into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt16(fields.count))
        for key in fields.keys.sorted() {
            writeShortString(key, into: &buffer)
            writeShortString(fields[key]!, into: &buffer)
        }
    }

    private static func readFields(_ buffer: inout ByteBuffer, limits: Limits) throws(XferError) -> [String: String] {
        guard let count = buffer.readInteger(as: UInt16.self) else { throw truncated("hello") }
        guard Int(count) <= limits.maxFields else {
            throw XferError(.protocolError, "\(count) handshake fields, at most \(limits.maxFields) are allowed")
        }
        var fields: [String: String] = [:]
        for _ in 0..<count {
            let key = try readShortString(&buffer, what: "handshake")
            let value = try readShortString(&buffer, what: "handshake")
            guard key.utf8.count <= limits.maxFieldLength, value.utf8.count <= limits.maxFieldLength else {
                throw XferError(
                    .protocolError,
                    "handshake field \"\(key.prefix(32))\" is longer than \(limits.maxFieldLength) bytes"
                )
            }
            fields[key] = value
        }
        return fields
    }
}
