import NIOCore
import Testing
import XferProtocol

/// Pins the `xfer.v1` wire format byte for byte and checks that the decoder refuses hostile input.
@Suite struct WireMessageTests {
    // MARK: Pinned encodings

    @Test func helloIsVersionTypeCountThenFieldsSortedByKey() {
        let message = WireMessage.hello(["timezone": "UTC", "role": "send", "name": "ops"])
        let expected = hex(
            "01 01 0003"
                + " 0004 6e616d65 0003 6f7073"  // "name" = "ops"
                + " 0004 726f6c65 0004 73656e64"  // "role" = "send"
                + " 0008 74696d657a6f6e65 0003 555443"  // "timezone" = "UTC"
        )
        #expect(encodedBytes(message) == expected)
        #expect(decoded(expected) == message)
    }

    @Test func helloWithNoFieldsIsFourBytes() {
        #expect(encodedBytes(.hello([:])) == hex("01 01 0000"))
    }

    @Test func welcomeUsesTypeByteTwo() {
        let message = WireMessage.welcome(["server": "0.1.0", "client": "7"])
        let expected = hex(
            "01 02 0002"
                + " 0006 636c69656e74 0001 37"  // "client" = "7"
                + " 0006 736572766572 0005 302e312e30"  // "server" = "0.1.0"
        )
        #expect(encodedBytes(message) == expected)
        #expect(decoded(expected) == message)
    }

    @Test func okStatusPacksFlagsCountsAndEmptyStrings() {
        let message = WireMessage.status(.init(id: 5, ok: true, relayed: true, delivered: 2, held: 1))
        let expected = hex("01 03 0000000000000005 03 00000002 00000001 0000 0000")
        #expect(encodedBytes(message) == expected)
        #expect(decoded(expected) == message)
    }

    @Test func failedStatusCarriesCodeAndReason() {
        let message = WireMessage.status(
            .init(id: 1, ok: false, relayed: true, code: "no_listener", reason: "x")
        )
        let expected = hex("01 03 0000000000000001 02 00000000 00000000 000b 6e6f5f6c697374656e6572 0001 78")
        #expect(encodedBytes(message) == expected)
        #expect(decoded(expected) == message)
    }

    @Test func plainStatusHasOnlyTheOkFlag() {
        let expected = hex("01 03 00000000000000ff 01 00000000 00000000 0000 0000")
        #expect(encodedBytes(.status(.init(id: 255, ok: true))) == expected)
    }

    @Test func ackIsTwoBigEndianIDs() {
        let message = WireMessage.ack(first: 1, last: 0x0102)
        let expected = hex("01 04 0000000000000001 0000000000000102")
        #expect(encodedBytes(message) == expected)
        #expect(decoded(expected) == message)
    }

    @Test func deliverIsSeqThenSenderThenTextToTheEndOfTheFrame() {
        let message = WireMessage.deliver(seq: 2, from: "ops", text: "hi é")
        let expected = hex("01 05 0000000000000002 0003 6f7073 686920c3a9")
        #expect(encodedBytes(message) == expected)
        #expect(decoded(expected) == message)
    }

    @Test func errorIsCodeThenMessageToTheEndOfTheFrame() {
        let message = WireMessage.error(code: "bad_timezone", message: "no")
        let expected = hex("01 7f 000c 6261645f74696d657a6f6e65 6e6f")
        #expect(encodedBytes(message) == expected)
        #expect(decoded(expected) == message)
    }

    /// The SHA-256 used in pinned upload messages: bytes 0x00 to 0x1f.
    static let sha = [UInt8](0..<32)
    static let shaHex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

    @Test func offerIsFieldsSortedByKeyLikeHello() {
        let message = WireMessage.offer(["size": "5", "name": "a.txt"])
        let expected = hex(
            "01 10 0002"
                + " 0004 6e616d65 0005 612e747874"  // "name" = "a.txt"
                + " 0004 73697a65 0001 35"  // "size" = "5"
        )
        #expect(encodedBytes(message) == expected)
        #expect(decoded(expected) == message)
    }

    @Test func acceptIsTheResumeOffset() {
        let expected = hex("01 11 0000000000001000")
        #expect(encodedBytes(.accept(offset: 4096)) == expected)
        #expect(decoded(expected) == .accept(offset: 4096))
    }

    @Test func blockIsHeaderThenPayloadToTheEndOfTheFrame() {
        let block = WireMessage.Block(
            offset: 4096,
            rawLength: 3,
            crc32: 0xDEAD_BEEF,
            encoding: .raw,
            payload: ByteBuffer(string: "abc")
        )
        let expected = hex("01 12 0000000000001000 00000003 deadbeef 00 616263")
        #expect(encodedBytes(.block(block)) == expected)
        #expect(decoded(expected) == .block(block))
        #expect(WireMessage.Block.headerSize == expected.count - 3)
        var header = ByteBuffer()
        WireMessage.writeBlockHeader(block, into: &header)
        #expect(Array(header.readableBytesView) == Array(expected.prefix(WireMessage.Block.headerSize)))
    }

    @Test func zlibBlockHasEncodingByteOne() {
        let block = WireMessage.Block(offset: 0, rawLength: 9, crc32: 1, encoding: .zlib, payload: ByteBuffer())
        #expect(encodedBytes(.block(block)) == hex("01 12 0000000000000000 00000009 00000001 01"))
    }

    @Test func blockAckIsTheVerifiedOffset() {
        let expected = hex("01 13 0000000000002000")
        #expect(encodedBytes(.blockAck(offset: 8192)) == expected)
        #expect(decoded(expected) == .blockAck(offset: 8192))
    }

    @Test func blockNackIsOffsetThenReasonToTheEndOfTheFrame() {
        let expected = hex("01 14 0000000000000001 637263")
        #expect(encodedBytes(.blockNack(offset: 1, reason: "crc")) == expected)
        #expect(decoded(expected) == .blockNack(offset: 1, reason: "crc"))
    }

    @Test func finishIsSizeThenTheRawSHA256() {
        let expected = hex("01 15 0000000000000005 " + Self.shaHex)
        #expect(encodedBytes(.finish(size: 5, sha256: Self.sha)) == expected)
        #expect(decoded(expected) == .finish(size: 5, sha256: Self.sha))
    }

    @Test func savedIsSizeSHA256ThenNameToTheEndOfTheFrame() {
        let expected = hex("01 16 0000000000000005 " + Self.shaHex + " 612e747874")
        #expect(encodedBytes(.saved(size: 5, sha256: Self.sha, name: "a.txt")) == expected)
        #expect(decoded(expected) == .saved(size: 5, sha256: Self.sha, name: "a.txt"))
    }

    @Test func subprotocolAndVersionArePinned() {
        #expect(WireMessage.version == 1)
        #expect(WireMessage.subprotocol == "xfer.v1")
    }

    // MARK: Round trips

    static let samples: [WireMessage] = [
        .hello([:]),
        .hello(["timezone": "Europe/Paris", "role": "listen", "name": "ops", "to": "", "all": "1"]),
        .hello(["zone": "日本", "emoji": "👩‍💻", "nul": "a\u{0}b"]),
        .welcome(["client": "123456", "server": "0.1.0", "max_text": "1048576", "ping_interval": "20.0"]),
        .status(.init(id: 1, ok: true)),
        .status(.init(id: .max, ok: false, relayed: true, delivered: .max, held: .max, code: "c", reason: "r")),
        .status(.init(id: 42, ok: true, relayed: false, delivered: 0, held: 3, code: "", reason: "ünïcødé")),
        .ack(first: 1, last: 1),
        .ack(first: 7, last: .max),
        .deliver(seq: 1, from: "", text: ""),
        .deliver(seq: .max, from: "client-9", text: "line one\nline two\u{2028}\u{0}🙂"),
        .error(code: "", message: ""),
        .error(code: "message_too_large", message: String(repeating: "x", count: 70_000)),
        .offer(["upload": "0123456789abcdef", "name": "report.tar.gz", "size": "1099511627776", "kind": "file"]),
        .accept(offset: 0),
        .accept(offset: .max),
        .block(.init(offset: 0, rawLength: 0, crc32: 0, encoding: .raw, payload: ByteBuffer())),
        .block(
            .init(offset: 1 << 40, rawLength: .max, crc32: .max, encoding: .zlib, payload: ByteBuffer(bytes: [0, 1]))
        ),
        .blockAck(offset: 65536),
        .blockNack(offset: 0, reason: ""),
        .blockNack(offset: 12, reason: "crc mismatch: ünïcødé"),
        .finish(size: 0, sha256: [UInt8](repeating: 0xAB, count: 32)),
        .saved(size: .max, sha256: [UInt8](repeating: 0xCD, count: 32), name: "report (1).tar.gz"),
        .saved(size: 0, sha256: [UInt8](repeating: 0, count: 32), name: ""),
    ]

    @Test(arguments: Self.samples)
    func everyMessageRoundTrips(_ message: WireMessage) throws {
        let decoded = try WireMessage.decode(message.encoded())
        #expect(decoded == message)
    }

    @Test(arguments: Self.samples)
    func decodingIgnoresTheBufferReaderIndexOffset(_ message: WireMessage) throws {
        var buffer = ByteBuffer(bytes: [0xAA, 0xBB])
        message.encode(into: &buffer)
        buffer.moveReaderIndex(forwardBy: 2)
        #expect(try WireMessage.decode(buffer) == message)
    }

    @Test(arguments: Self.samples)
    func typeNameMatchesTheCase(_ message: WireMessage) {
        let names: [UInt8: String] = [
            1: "hello", 2: "welcome", 3: "status", 4: "ack", 5: "deliver", 0x10: "offer", 0x11: "accept",
            0x12: "block", 0x13: "block_ack", 0x14: "block_nack", 0x15: "finish", 0x16: "saved", 0x7F: "error",
        ]
        #expect(message.typeName == names[encodedBytes(message)[1]])
    }

    // MARK: Rejections

    @Test func wrongVersionByteIsAProtocolError() {
        for version: UInt8 in [0, 2, 0xFF] {
            let error = decodeError([version] + encodedBytes(.ack(first: 1, last: 1)).dropFirst())
            #expect(error?.code == .protocolError)
        }
    }

    @Test func unknownTypeByteIsAProtocolError() {
        let known: Set<UInt8> = [1, 2, 3, 4, 5, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x7F]
        for type in UInt8.min...UInt8.max where !known.contains(type) {
            let error = decodeError([1, type, 0, 0, 0, 0, 0, 0, 0, 0])
            #expect(error?.code == .protocolError, "type 0x\(String(type, radix: 16))")
        }
    }

    /// Messages whose every strict prefix is incomplete (deliver and error end with text that runs to the end of
    /// the frame, so those are given empty text here).
    static let fixedLengthMessages: [WireMessage] = [
        .hello(["timezone": "UTC", "role": "send"]),
        .welcome(["client": "1"]),
        .status(.init(id: 3, ok: false, relayed: true, delivered: 1, held: 2, code: "no_listener", reason: "why")),
        .ack(first: 1, last: 9),
        .deliver(seq: 4, from: "ops", text: ""),
        .error(code: "timeout", message: ""),
        .offer(["upload": "u1", "name": "a"]),
        .accept(offset: 3),
        .block(.init(offset: 8, rawLength: 0, crc32: 0, encoding: .raw, payload: ByteBuffer())),
        .blockAck(offset: 9),
        .blockNack(offset: 10, reason: ""),
        .finish(size: 11, sha256: [UInt8](repeating: 7, count: 32)),
        .saved(size: 12, sha256: [UInt8](repeating: 8, count: 32), name: ""),
    ]

    @Test(arguments: Self.fixedLengthMessages)
    func everyPrefixOfAFrameIsAProtocolError(_ message: WireMessage) {
        let bytes = encodedBytes(message)
        for length in 0..<bytes.count {
            let error = decodeError(Array(bytes.prefix(length)))
            #expect(error?.code == .protocolError, "prefix of \(length) of \(bytes.count) bytes")
        }
        #expect(decodeError(bytes) == nil)
    }

    @Test func truncatedDeliverHeaderIsAProtocolErrorButShorterTextIsStillADeliver() {
        let bytes = encodedBytes(.deliver(seq: 4, from: "ops", text: "abc"))
        let headerLength = 2 + 8 + 2 + 3
        for length in 0..<headerLength {
            #expect(decodeError(Array(bytes.prefix(length)))?.code == .protocolError)
        }
        // The text runs to the end of the WebSocket frame, which delimits it; the decoder cannot see a cut there.
        #expect(decoded(Array(bytes.prefix(headerLength + 2))) == .deliver(seq: 4, from: "ops", text: "ab"))
    }

    @Test(arguments: Self.samples)
    func trailingBytesAreAProtocolError(_ message: WireMessage) {
        // These end with text or payload that runs to the end of the frame: no byte can be trailing.
        switch message {
        case .deliver, .error, .block, .blockNack, .saved: return
        default: break
        }
        let error = decodeError(encodedBytes(message) + [0])
        #expect(error?.code == .protocolError)
    }

    @Test func randomBytesNeverCrashTheDecoder() {
        var generator = SplitMix64(seed: 0x5EED)
        for _ in 0..<20_000 {
            let length = Int(generator.next() % 48)
            var bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            if bytes.count >= 2 {
                bytes[0] = 1
                let types: [UInt8] = [1, 2, 3, 4, 5, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x7F]
                bytes[1] = types[Int(generator.next() % UInt64(types.count))]
            }
            if let error = decodeError(bytes) {
                #expect(error.code == .protocolError || error.code == .invalidUTF8)
            }
        }
    }

    @Test func invalidUTF8InAShortStringIsRejected() {
        // hello with key "a" and value 0xC3 0x28 (a lead byte followed by a non-continuation byte).
        let hello = hex("01 01 0001 0001 61 0002 c328")
        #expect(decodeError(hello)?.code == .invalidUTF8)
        let status = hex("01 03 0000000000000001 00 00000000 00000000 0001 ff 0000")
        #expect(decodeError(status)?.code == .invalidUTF8)
        let deliverFrom = hex("01 05 0000000000000001 0001 80")
        #expect(decodeError(deliverFrom)?.code == .invalidUTF8)
    }

    @Test func invalidUTF8InTrailingTextIsRejected() {
        #expect(decodeError(hex("01 05 0000000000000001 0000 68 ed a0 80"))?.code == .invalidUTF8)  // surrogate
        #expect(decodeError(hex("01 7f 0000 c0 af"))?.code == .invalidUTF8)  // overlong encoding of '/'
        #expect(decodeError(hex("01 7f 0000 e2 82"))?.code == .invalidUTF8)  // cut in the middle of '€'
    }

    @Test func emptyOrZeroAckRangeIsAProtocolError() {
        #expect(decodeError(hex("01 04 0000000000000005 0000000000000004"))?.code == .protocolError)
        #expect(decodeError(hex("01 04 0000000000000000 0000000000000000"))?.code == .protocolError)
        #expect(decodeError(hex("01 04 0000000000000000 0000000000000003"))?.code == .protocolError)
        #expect(decodeError(hex("01 04 0000000000000005 0000000000000005")) == nil)
    }

    @Test func moreHelloFieldsThanTheLimitAreAProtocolError() {
        let fields = Dictionary(uniqueKeysWithValues: (0..<33).map { ("k\($0)", "v") })
        #expect(decodeError(encodedBytes(.hello(fields)))?.code == .protocolError)
        #expect(decodeError(encodedBytes(.welcome(fields)))?.code == .protocolError)
        let allowed = Dictionary(uniqueKeysWithValues: (0..<32).map { ("k\($0)", "v") })
        #expect(decodeError(encodedBytes(.hello(allowed))) == nil)
    }

    @Test func aHugeFieldCountIsRefusedBeforeReadingFields() {
        // 65535 fields announced, none present: the count alone is refused, without a truncation error.
        let error = decodeError(hex("01 01 ffff"))
        #expect(error?.code == .protocolError)
        #expect(error?.message.contains("65535") == true)
    }

    @Test func aFieldLongerThanTheLimitIsAProtocolError() {
        let long = String(repeating: "a", count: 1025)
        #expect(decodeError(encodedBytes(.hello(["name": long])))?.code == .protocolError)
        #expect(decodeError(encodedBytes(.hello([long: "x"])))?.code == .protocolError)
        #expect(decodeError(encodedBytes(.hello(["name": String(long.dropFirst())]))) == nil)
    }

    @Test func limitsAreInitParameters() {
        let limits = WireMessage.Limits(maxFields: 1, maxFieldLength: 3)
        #expect(decodeError(encodedBytes(.hello(["a": "abc"])), limits: limits) == nil)
        #expect(decodeError(encodedBytes(.hello(["a": "abcd"])), limits: limits)?.code == .protocolError)
        #expect(decodeError(encodedBytes(.hello(["a": "1", "b": "2"])), limits: limits)?.code == .protocolError)
    }

    @Test func blockWithUnknownEncodingIsAProtocolError() {
        #expect(decodeError(hex("01 12 0000000000000000 00000001 00000000 02 61"))?.code == .protocolError)
        #expect(decodeError(hex("01 12 0000000000000000 00000001 00000000 ff 61"))?.code == .protocolError)
    }

    @Test func finishAndSavedNeedAWholeSHA256() {
        #expect(decodeError(hex("01 15 0000000000000005 " + String(Self.shaHex.dropLast(2))))?.code == .protocolError)
        #expect(decodeError(hex("01 16 0000000000000005 0102"))?.code == .protocolError)
    }

    @Test func invalidUTF8InUploadTextIsRejected() {
        #expect(decodeError(hex("01 14 0000000000000001 ff"))?.code == .invalidUTF8)
        #expect(decodeError(hex("01 16 0000000000000005 " + Self.shaHex + " c3"))?.code == .invalidUTF8)
        #expect(decodeError(hex("01 10 0001 0004 6e616d65 0001 80"))?.code == .invalidUTF8)
    }

    @Test func offerObeysTheFieldLimits() {
        let fields = Dictionary(uniqueKeysWithValues: (0..<33).map { ("k\($0)", "v") })
        #expect(decodeError(encodedBytes(.offer(fields)))?.code == .protocolError)
        #expect(
            decodeError(encodedBytes(.offer(["name": String(repeating: "n", count: 1025)])))?.code == .protocolError
        )
    }

    @Test func blockPayloadIsASliceOfTheFrame() throws {
        let frame = ByteBuffer(bytes: hex("01 12 0000000000000010 00000004 00000000 00 deadbeef"))
        guard case .block(let block) = try WireMessage.decode(frame) else {
            Issue.record("not a block")
            return
        }
        #expect(block.offset == 16)
        #expect(Array(block.payload.readableBytesView) == [0xDE, 0xAD, 0xBE, 0xEF])
    }

    @Test func defaultLimitsAreDocumentedValues() {
        let limits = WireMessage.Limits()
        #expect(limits.maxFields == 32)
        #expect(limits.maxFieldLength == 1024)
    }
}

/// A small deterministic random number generator, so that the fuzz test fails the same way every time.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        self.state = seed
    }

    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
