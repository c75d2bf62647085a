import NIOCore
import NIOWebSocket
import XferProtocol

/// One WebSocket frame from a client, its payload already unmasked.
public struct ClientFrame {
    public var fin: Bool
    public var rsv1: Bool
    public var rsv2: Bool
    public var rsv3: Bool
    public var opcode: WebSocketOpcode
    /// Whether the client masked the frame (RFC 6455 section 5.1 requires it; the server refuses it otherwise).
    public var masked: Bool
    /// The application data, unmasked.
    public var data: ByteBuffer

    public init(
        fin: Bool,
        rsv1: Bool = false,
        rsv2: Bool = false,
        rsv3: Bool = false,
        opcode: WebSocketOpcode,
        masked: Bool,
        data: ByteBuffer
    ) {
        self.fin = fin
        self.rsv1 = rsv1
        self.rsv2 = rsv2
        self.rsv3 = rsv3
        self.opcode = opcode
        self.masked = masked
        self.data = data
    }

    /// The frame NIO's decoder would have produced, unmasked into a new buffer.
    public init(_ frame: WebSocketFrame) {
        var data = frame.data
        if let key = frame.maskKey, data.readableBytes > 0 {
            data = WebSocketMasking.unmasked(
                frame.data,
                key: [key[0], key[1], key[2], key[3]],
                allocator: ByteBufferAllocator()
            )
        }
        self.init(
            fin: frame.fin,
            rsv1: frame.rsv1,
            rsv2: frame.rsv2,
            rsv3: frame.rsv3,
            opcode: frame.opcode,
            masked: frame.maskKey != nil,
            data: data
        )
    }
}

/// The server's WebSocket frame decoder (RFC 6455 section 5.2): it takes NIO's place behind the upgrade and
/// copies each payload once, unmasking as it copies, from the socket's read buffers straight into the buffer the
/// frame is handed on in.
///
/// NIO's `WebSocketFrameDecoder` first gathers a whole frame in its cumulation buffer (a copy of every read after
/// the first), and the payload was then unmasked into a second buffer: two user-space copies of every upload byte.
/// Here the destination is chosen as soon as the header says how long the payload is (a block-sized binary payload
/// takes a buffer of `blockBuffers`, which the upload gives back once the block is written and hashed; any other
/// payload a buffer that grows with the bytes that arrive), and every read fills it directly.
///
/// The rules of NIO's decoder are kept and reported the same way (a `NIOWebSocketError` through `errorCaught`,
/// which `WebSocketProtocolErrorHandler` answers with a close frame): a frame longer than `maxFrameSize` (1009),
/// a fragmented control frame or one longer than 125 bytes (1002). After an error the rest of the input is
/// dropped. Whether a frame was masked, and its RSV bits, are for the next handler to judge.
public final class ClientFrameDecoder: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ClientFrame

    /// Binary payloads of at least this many bytes (and at most the pool's capacity) go into pooled buffers.
    package static let pooledPayloadMinimum = 64 * 1024
    /// Most bytes reserved for a payload that is not pooled before its bytes arrive.
    package static let initialPayloadCapacity = 64 * 1024

    /// The header being read; `Header.parse` says when it is complete.
    private var headerBytes: [UInt8] = []
    /// The frame whose payload is arriving.
    private var current: (header: Header, payload: ByteBuffer)?
    private var failed = false
    private let maxFrameSize: Int
    private let pool: BufferPool?

    /// - Parameters:
    ///   - maxFrameSize: the longest payload accepted.
    ///   - pool: where block-sized binary payloads are unmasked into (nil: always a fresh buffer).
    package init(maxFrameSize: Int, pool: BufferPool?) {
        self.maxFrameSize = maxFrameSize
        self.pool = pool
        self.headerBytes.reserveCapacity(Header.maxSize)
    }

    /// A decoder whose payloads all go into fresh buffers (the fuzz target's, and any user's without a pool).
    public convenience init(maxFrameSize: Int) {
        self.init(maxFrameSize: maxFrameSize, pool: nil)
    }

    /// Capacity of the buffer of the frame whose payload is arriving (nil between frames), for the tests of the
    /// memory bound.
    package var pendingPayloadCapacity: Int? { self.current?.payload.capacity }

    /// A complete frame header.
    package struct Header: Equatable {
        /// Bytes of the longest header: 2, an 8-byte length, a 4-byte key (RFC 6455 section 5.2).
        package static let maxSize = 14

        package var fin: Bool
        package var rsv1: Bool
        package var rsv2: Bool
        package var rsv3: Bool
        package var opcodeBits: UInt8
        package var length: UInt64
        /// The masking key as a little-endian word of the four key bytes (nil: unmasked).
        package var key: UInt32?
        /// Bytes the header took.
        package var size: Int

        /// The header at the start of `bytes`, or nil while `bytes` is too short to hold all of it.
        package static func parse(_ bytes: some Collection<UInt8>) -> Header? {
            var iterator = bytes.makeIterator()
            guard let first = iterator.next(), let second = iterator.next() else { return nil }
            let masked = second & 0x80 != 0
            let lengthBits = second & 0x7F
            let lengthBytes = lengthBits == 127 ? 8 : lengthBits == 126 ? 2 : 0
            let size = 2 + lengthBytes + (masked ? 4 : 0)
            guard bytes.count >= size else { return nil }
            var length = UInt64(lengthBits)
            if lengthBytes > 0 {
                length = 0
                for _ in 0..<lengthBytes { length = length << 8 | UInt64(iterator.next()!) }
            }
            var key: UInt32?
            if masked {
                var word: UInt32 = 0
                for index in 0..<4 { word |= UInt32(iterator.next()!) << (8 * UInt32(index)) }
                key = word
            }
            return Header(
                fin: first & 0x80 != 0,
                rsv1: first & 0x40 != 0,
                rsv2: first & 0x20 != 0,
                rsv3: first & 0x10 != 0,
                opcodeBits: first & 0x0F,
                length: length,
                key: key,
                size: size
            )
        }

        /// The rule broken by a header whose length is complete but whose masking key has not all arrived, or nil
        /// (nil too while the length itself is incomplete). NIO's decoder judges a frame as soon as it knows the
        /// length, before the key.
        package static func earlyViolation(_ bytes: [UInt8], maxFrameSize: Int) -> NIOWebSocketError? {
            guard bytes.count >= 2 else { return nil }
            let lengthBits = bytes[1] & 0x7F
            let lengthBytes = lengthBits == 127 ? 8 : lengthBits == 126 ? 2 : 0
            guard bytes.count >= 2 + lengthBytes else { return nil }
            let length =
                lengthBytes == 0 ? UInt64(lengthBits) : bytes[2..<(2 + lengthBytes)].reduce(0) { $0 << 8 | UInt64($1) }
            let header = Header(
                fin: bytes[0] & 0x80 != 0,
                rsv1: false,
                rsv2: false,
                rsv3: false,
                opcodeBits: bytes[0] & 0x0F,
                length: length,
                key: nil,
                size: 2 + lengthBytes
            )
            return header.violation(maxFrameSize: maxFrameSize)
        }

        /// The rule this header breaks, checked as NIO's decoder checks it, or nil.
        package func violation(maxFrameSize: Int) -> NIOWebSocketError? {
            if self.length > UInt64(maxFrameSize) { return .invalidFrameLength }
            let isControl = self.opcodeBits & 0x08 != 0
            if isControl && !self.fin { return .fragmentedControlFrame }
            if isControl && self.length > 125 { return .multiByteControlFrameLength }
            return nil
        }
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var input = Self.unwrapInboundIn(data)
        while !self.failed {
            if self.current == nil {
                guard self.readHeader(from: &input, context: context) else { return }
            }
            guard self.readPayload(from: &input, context: context) else { return }
        }
    }

    /// Takes header bytes from `input`; true once a header is complete and its payload buffer allocated.
    private func readHeader(from input: inout ByteBuffer, context: ChannelHandlerContext) -> Bool {
        let header: Header
        if self.headerBytes.isEmpty, let whole = Header.parse(input.readableBytesView) {
            // The usual case: the whole header is in this read.
            header = whole
            input.moveReaderIndex(forwardBy: whole.size)
        } else {
            // Gathered a byte at a time across reads (at most 14 bytes).
            while true {
                if let whole = Header.parse(self.headerBytes) {
                    header = whole
                    self.headerBytes.removeAll(keepingCapacity: true)
                    break
                }
                guard let byte = input.readInteger(as: UInt8.self) else {
                    // As NIO's decoder: a frame is judged as soon as its length is known, without waiting for
                    // the masking key.
                    if let violation = Header.earlyViolation(self.headerBytes, maxFrameSize: self.maxFrameSize) {
                        self.failed = true
                        context.fireErrorCaught(violation)
                    }
                    return false
                }
                self.headerBytes.append(byte)
            }
        }
        if let violation = header.violation(maxFrameSize: self.maxFrameSize) {
            self.failed = true
            context.fireErrorCaught(violation)
            return false
        }
        let length = Int(header.length)
        let payload: ByteBuffer
        if let pool = self.pool, header.opcodeBits == UInt8(webSocketOpcode: .binary),
            length >= Self.pooledPayloadMinimum, length <= pool.capacity
        {
            payload = pool.take()
        } else {
            // Room for what has arrived, not for what the header declares: a peer that announces a 16 MiB frame
            // and sends nothing more must not take 16 MiB. The buffer grows as the payload arrives, as NIO's
            // cumulation buffer did.
            let initial = min(length, max(Self.initialPayloadCapacity, input.readableBytes))
            payload = context.channel.allocator.buffer(capacity: initial)
        }
        self.current = (header, payload)
        return true
    }

    /// Copies (and unmasks) payload bytes from `input`; true once a frame was handed on.
    private func readPayload(from input: inout ByteBuffer, context: ChannelHandlerContext) -> Bool {
        // Moved out of `self.current`, not copied: the payload buffer stays uniquely owned, so writing into it never
        // copies (a second reference, even a local one, makes every read copy the whole payload so far).
        guard case (let header, var payload)? = self.current.take() else { return false }
        let wanted = Int(header.length) - payload.readableBytes
        let count = min(wanted, input.readableBytes)
        if count > 0 {
            let phase = payload.readableBytes & 3
            payload.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { target in
                input.withUnsafeReadableBytes { source in
                    let source = UnsafeRawBufferPointer(rebasing: source[..<count])
                    if let key = header.key {
                        WebSocketMasking.copy(source, to: target, keyWord: key, phase: phase)
                    } else {
                        target.copyMemory(from: source)
                    }
                }
                return count
            }
            input.moveReaderIndex(forwardBy: count)
        }
        guard count == wanted else {
            self.current = (header, payload)
            return false
        }
        let frame = ClientFrame(
            fin: header.fin,
            rsv1: header.rsv1,
            rsv2: header.rsv2,
            rsv3: header.rsv3,
            opcode: WebSocketOpcode(encodedWebSocketOpcode: header.opcodeBits)!,
            masked: header.key != nil,
            data: payload
        )
        context.fireChannelRead(Self.wrapInboundOut(frame))
        return true
    }
}

@available(*, unavailable)
extension ClientFrameDecoder: Sendable {}
