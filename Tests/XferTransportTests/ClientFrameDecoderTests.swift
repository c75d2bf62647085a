import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

@testable import XferProtocol
@testable import XferTransport

/// The server's frame decoder: the frames NIO's decoder gives, unmasked, however the bytes are split into reads;
/// NIO's length and control-frame rules; block payloads in pooled buffers.
struct ClientFrameDecoderTests {
    /// A deterministic byte generator (xorshift), so a failure reproduces.
    struct Bytes {
        var state: UInt64
        mutating func next() -> UInt64 {
            self.state ^= self.state << 13
            self.state ^= self.state >> 7
            self.state ^= self.state << 17
            return self.state
        }
        mutating func bytes(_ count: Int) -> [UInt8] {
            (0..<count).map { _ in UInt8(truncatingIfNeeded: self.next()) }
        }
    }

    static let maxFrameSize = (1 << 20) + 4096 + 64

    /// A channel with only the decoder: frames come out as `ClientFrame`s.
    static func channel(pool: BufferPool? = nil, maxFrameSize: Int = Self.maxFrameSize) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ClientFrameDecoder(maxFrameSize: maxFrameSize, pool: pool))
        return channel
    }

    /// The same bytes through NIO's own decoder, unmasked with NIO's byte-at-a-time `unmaskedData`.
    static func reference(_ wire: ByteBuffer) throws -> [(WebSocketFrame, [UInt8])] {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(
            ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: Self.maxFrameSize))
        )
        try channel.writeInbound(wire)
        var frames: [(WebSocketFrame, [UInt8])] = []
        while let frame = try channel.readInbound(as: WebSocketFrame.self) {
            frames.append((frame, Array(frame.unmaskedData.readableBytesView)))
        }
        _ = try channel.finish()
        return frames
    }

    static func frames(_ channel: EmbeddedChannel) throws -> [ClientFrame] {
        var frames: [ClientFrame] = []
        while let frame = try channel.readInbound(as: ClientFrame.self) { frames.append(frame) }
        return frames
    }

    /// Several frames of every length class (7-bit, 16-bit and 64-bit lengths), masked and not, one RSV bit set,
    /// control frames between them.
    static func sampleWire(seed: UInt64) -> ByteBuffer {
        var random = Bytes(state: seed)
        var wire = ByteBuffer()
        let shapes: [(WebSocketOpcode, Int, Bool)] = [
            (.text, 0, true), (.binary, 1, true), (.ping, 125, true), (.binary, 126, true), (.text, 4099, false),
            (.binary, 65535, true), (.continuation, 65536, true), (.binary, 1 << 20, true), (.pong, 0, true),
            (.connectionClose, 2, true), (.binary, 70001, false),
        ]
        for (index, (opcode, length, masked)) in shapes.enumerated() {
            let key = masked ? WebSocketMaskingKey(random.bytes(4)) : nil
            var data = ByteBuffer(bytes: random.bytes(length))
            if let key { data.webSocketMask(key) }
            let frame = WebSocketFrame(
                fin: opcode != .continuation,
                rsv2: index == 3,
                opcode: opcode,
                maskKey: key,
                data: data
            )
            var bytes = frame.wireBytes
            wire.writeBuffer(&bytes)
        }
        return wire
    }

    @Test(arguments: [1, 2, 3, 7, 14, 15, 1000, 65536, 1 << 21])
    func givesNIOsFramesUnmaskedForAnySplitOfTheReads(_ chunk: Int) throws {
        let wire = Self.sampleWire(seed: 0x9E37_79B9_7F4A_7C15)
        let expected = try Self.reference(wire)
        let channel = try Self.channel()
        var rest = wire
        while let piece = rest.readSlice(length: min(chunk, rest.readableBytes)), piece.readableBytes > 0 {
            try channel.writeInbound(piece)
        }
        let frames = try Self.frames(channel)
        #expect(frames.count == expected.count)
        for (frame, (reference, payload)) in zip(frames, expected) {
            #expect(frame.fin == reference.fin)
            #expect(frame.rsv1 == reference.rsv1 && frame.rsv2 == reference.rsv2 && frame.rsv3 == reference.rsv3)
            #expect(frame.opcode == reference.opcode)
            #expect(frame.masked == (reference.maskKey != nil))
            #expect(Array(frame.data.readableBytesView) == payload, "opcode \(frame.opcode), \(payload.count) bytes")
        }
        _ = try channel.finish()
    }

    @Test func readsOfUnevenSizesGiveTheSameFrames() throws {
        let wire = Self.sampleWire(seed: 42)
        let expected = try Self.reference(wire)
        var sizes = Bytes(state: 7)
        let channel = try Self.channel()
        var rest = wire
        while rest.readableBytes > 0 {
            let size = 1 + Int(sizes.next() % 9000)
            try channel.writeInbound(rest.readSlice(length: min(size, rest.readableBytes))!)
        }
        let frames = try Self.frames(channel)
        #expect(frames.map { Array($0.data.readableBytesView) } == expected.map { $0.1 })
    }

    @Test func headersParseEveryLengthFormAndTheKeyInMemoryOrder() {
        let short = ClientFrameDecoder.Header.parse([0x82, 0x85, 0x01, 0x02, 0x03, 0x04])
        #expect(
            short
                == .init(
                    fin: true,
                    rsv1: false,
                    rsv2: false,
                    rsv3: false,
                    opcodeBits: 2,
                    length: 5,
                    key: 0x0403_0201,
                    size: 6
                )
        )
        let word = ClientFrameDecoder.Header.parse([0x01, 0x7E, 0x01, 0x00])
        #expect(word?.length == 256 && word?.key == nil && word?.size == 4 && word?.fin == false)
        let qword = ClientFrameDecoder.Header.parse([0xC2, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0, 9, 9, 9, 9])
        #expect(qword?.length == 1 << 32 && qword?.size == 14 && qword?.rsv1 == true)
        // Incomplete: every proper prefix of a header is not yet a header.
        let whole: [UInt8] = [0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4]
        for end in 0..<whole.count {
            #expect(ClientFrameDecoder.Header.parse(whole[..<end]) == nil, "prefix of \(end) bytes")
        }
        #expect(ClientFrameDecoder.Header.parse(whole) != nil)
    }

    @Test func aFrameOverTheLimitIsAnErrorAndTheRestIsDropped() throws {
        let channel = try Self.channel(maxFrameSize: 1000)
        var wire = ByteBuffer(bytes: [0x82, 0xFE, 0x03, 0xE9, 1, 2, 3, 4])  // 1001 bytes, masked
        #expect(throws: NIOWebSocketError.invalidFrameLength) { try channel.writeInbound(wire) }
        wire = WebSocketFrame(fin: true, opcode: .text, maskKey: [1, 2, 3, 4], data: ByteBuffer(string: "x")).wireBytes
        try channel.writeInbound(wire)
        #expect(try Self.frames(channel).isEmpty)
    }

    @Test func aFrameAtTheLimitPasses() throws {
        let channel = try Self.channel(maxFrameSize: 1000)
        let frame = WebSocketFrame(
            fin: true,
            opcode: .binary,
            maskKey: [9, 8, 7, 6],
            data: ByteBuffer(repeating: 0x5A, count: 1000)
        )
        try channel.writeInbound(frame.wireBytes)
        let frames = try Self.frames(channel)
        #expect(frames.count == 1 && frames.first?.data.readableBytes == 1000)
    }

    @Test func aHugeDeclaredLengthIsRefusedBeforeAnyAllocation() throws {
        let channel = try Self.channel()
        let wire = ByteBuffer(bytes: [0x82, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4])
        #expect(throws: NIOWebSocketError.invalidFrameLength) { try channel.writeInbound(wire) }
    }

    /// Issue 10's memory bound: a peer that announces a large frame and then sends little must not make the server
    /// reserve the announced size; the buffer grows with what arrives, and the frame still comes out whole.
    @Test func aLargeDeclaredFrameReservesOnlyWhatArrives() throws {
        let decoder = ClientFrameDecoder(maxFrameSize: 16 << 20, pool: nil)
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(decoder)
        var random = Bytes(state: 42)
        let payload = random.bytes(2 << 20)
        let wire = WebSocketFrame(fin: true, opcode: .text, maskKey: [5, 6, 7, 8], data: ByteBuffer(bytes: payload))
            .wireBytes
        let start: ByteBuffer = wire.getSlice(at: wire.readerIndex, length: 14 + 100)!
        try channel.writeInbound(start)
        let reserved = try #require(decoder.pendingPayloadCapacity)
        #expect(reserved <= ClientFrameDecoder.initialPayloadCapacity)
        var rest = wire
        rest.moveReaderIndex(forwardBy: 14 + 100)
        while rest.readableBytes > 0 {
            let read: ByteBuffer = rest.readSlice(length: min(rest.readableBytes, 300_000))!
            try channel.writeInbound(read)
        }
        let frames = try Self.frames(channel)
        #expect(frames.count == 1)
        // `wireBytes` sends the payload as it stands, so the decoder's unmasking XORs it with the key.
        let key: [UInt8] = [5, 6, 7, 8]
        let unmasked = payload.enumerated().map { $0.element ^ key[$0.offset % 4] }
        #expect(frames.first.map { Array($0.data.readableBytesView) == unmasked } == true)
        #expect(decoder.pendingPayloadCapacity == nil)
    }

    /// Found by FuzzFrameDecoder: NIO's decoder judges a frame as soon as its length is known; this decoder waited
    /// for the masking key first. Now both refuse at once, however the header is split.
    @Test func aFrameIsJudgedOnceItsLengthIsKnownBeforeTheMaskingKey() throws {
        let cases: [([UInt8], NIOWebSocketError)] = [
            // A 64-bit length over Int.max; over the limit of 1000 (64- and 16-bit); a fragmented ping; a 126-byte
            // ping.
            ([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x28, 0x61, 0x40, 0x01, 0x06], .invalidFrameLength),
            ([0xFF, 0xFF, 0x04, 0x00, 0x00, 0x00, 0x00, 0x61, 0x62, 0x62, 0x63, 0x64], .invalidFrameLength),
            ([0x82, 0xFE, 0x03, 0xE9, 0x01], .invalidFrameLength),
            ([0x09, 0x81], .fragmentedControlFrame),
            ([0x89, 0xFE, 0x00, 0x7E], .multiByteControlFrameLength),
        ]
        for (header, error) in cases {
            for split in Set([header.count, 1, 2, header.count - 1]) where split > 0 {
                let channel = try Self.channel(maxFrameSize: 1000)
                #expect(throws: error, "\(header), split at \(split)") {
                    try channel.writeInbound(ByteBuffer(bytes: header[..<split]))
                    if split < header.count { try channel.writeInbound(ByteBuffer(bytes: header[split...])) }
                }
            }
        }
        // Until the length is complete nothing is judged.
        let channel = try Self.channel(maxFrameSize: 1000)
        try channel.writeInbound(ByteBuffer(bytes: [0x82, 0xFF, 0x7F, 0xFF]))
        #expect(try Self.frames(channel).isEmpty)
    }

    @Test func fragmentedAndLongControlFramesAreProtocolErrors() throws {
        let fragmented = try Self.channel()
        #expect(throws: NIOWebSocketError.fragmentedControlFrame) {
            try fragmented.writeInbound(ByteBuffer(bytes: [0x09, 0x80, 1, 2, 3, 4]))  // ping without FIN
        }
        let long = try Self.channel()
        #expect(throws: NIOWebSocketError.multiByteControlFrameLength) {
            try long.writeInbound(ByteBuffer(bytes: [0x89, 0xFE, 0x00, 0x7E, 1, 2, 3, 4]))  // 126-byte ping
        }
    }

    @Test func blockSizedBinaryPayloadsReuseThePoolsBuffers() throws {
        let pool = BufferPool(capacity: 256 * 1024, limit: 4)
        var kept = pool.take()
        kept.writeBytes([1, 2, 3])
        let storage = kept.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
        // Moved back: nothing else holds it, so the pool keeps its storage.
        pool.give(consume kept)
        let channel = try Self.channel(pool: pool)
        var random = Bytes(state: 3)
        let payload = random.bytes(200 * 1024)
        var masked = ByteBuffer(bytes: payload)
        masked.webSocketMask([0xA1, 0xB2, 0xC3, 0xD4])
        let frame = WebSocketFrame(fin: true, opcode: .binary, maskKey: [0xA1, 0xB2, 0xC3, 0xD4], data: masked)
        try channel.writeInbound(frame.wireBytes)
        #expect(pool.count == 0, "the decoder took the pooled buffer")
        let decoded = try #require(try Self.frames(channel).first)
        #expect(Array(decoded.data.readableBytesView) == payload)
        #expect(decoded.data.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) } == storage)
        // Small binary payloads and text of any size take buffers of their own.
        let small = WebSocketFrame(fin: true, opcode: .binary, maskKey: [1, 1, 1, 1], data: ByteBuffer(bytes: [0, 1]))
        pool.give(decoded.data)
        try channel.writeInbound(small.wireBytes)
        #expect(pool.count == 1)
    }

    /// A payload arriving over many reads is written in place each time: a second reference to the buffer while it
    /// fills would make every read copy the whole payload so far (quadratic, and fresh memory per read).
    @Test func aPayloadArrivingInManyReadsStaysInItsPooledBuffer() throws {
        let pool = BufferPool(capacity: 256 * 1024, limit: 4)
        let buffer = pool.take()
        let storage = buffer.withVeryUnsafeBytes { UInt(bitPattern: $0.baseAddress) }
        pool.give(consume buffer)
        #expect(pool.count == 1 && pool.sharedOnReturn == 0)
        let channel = try Self.channel(pool: pool)
        var random = Bytes(state: 11)
        let payload = random.bytes(150 * 1024 + 3)
        var masked = ByteBuffer(bytes: payload)
        masked.webSocketMask([7, 0, 7, 0])
        var wire = WebSocketFrame(fin: true, opcode: .binary, maskKey: [7, 0, 7, 0], data: masked).wireBytes
        while let piece = wire.readSlice(length: min(4093, wire.readableBytes)), piece.readableBytes > 0 {
            try channel.writeInbound(piece)
        }
        let decoded = try #require(try Self.frames(channel).first)
        #expect(Array(decoded.data.readableBytesView) == payload)
        #expect(decoded.data.withVeryUnsafeBytes { UInt(bitPattern: $0.baseAddress) } == storage, "filled in place")
    }

    @Test func theConversionFromNIOsFrameUnmasks() {
        var data = ByteBuffer(string: "masked payload")
        data.webSocketMask([5, 6, 7, 8])
        let frame = ClientFrame(
            WebSocketFrame(fin: false, rsv3: true, opcode: .text, maskKey: [5, 6, 7, 8], data: data)
        )
        #expect(String(buffer: frame.data) == "masked payload")
        #expect(frame.masked && !frame.fin && frame.rsv3 && frame.opcode == .text)
        let plain = ClientFrame(WebSocketFrame(fin: true, opcode: .binary, data: ByteBuffer(string: "plain")))
        #expect(String(buffer: plain.data) == "plain" && !plain.masked)
    }
}
