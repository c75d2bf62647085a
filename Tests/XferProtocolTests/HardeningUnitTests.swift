import Testing

@testable import XferProtocol

/// The pure parts of issue 10: close payloads, the outbound queue, strict offer numbers, echo mode.
@Suite struct HardeningUnitTests {
    @Test func closeCodesThatMayNotBeSentAreRefused() {
        for code: UInt16 in [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
            let payload = [UInt8(code >> 8), UInt8(code & 0xFF)]
            #expect(
                ClosePayload.parse(payload)
                    == .invalid(.protocolError, "close code \(code) may not be sent (RFC 6455 section 7.4)")
            )
        }
        for code: UInt16 in [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999] {
            #expect(ClosePayload.parse([UInt8(code >> 8), UInt8(code & 0xFF)]) == .valid(code: code, reason: ""))
        }
    }

    @Test func emptyOneByteAndNonUTF8ClosePayloads() {
        #expect(ClosePayload.parse([UInt8]()) == .valid(code: nil, reason: ""))
        if case .invalid(let code, _) = ClosePayload.parse([0x03]) {
            #expect(code == .protocolError)
        } else {
            Issue.record("a 1-byte close payload was accepted")
        }
        if case .invalid(let code, _) = ClosePayload.parse([0x03, 0xE8, 0xFF, 0xFE]) {
            #expect(code == .invalidUTF8)
        } else {
            Issue.record("a close reason that is not UTF-8 was accepted")
        }
        #expect(ClosePayload.parse([0x03, 0xE8] + Array("bye ✓".utf8)) == .valid(code: 1000, reason: "bye ✓"))
    }

    @Test func outboundQueueClosesOnceWhenOverItsLimitsAndDropsAfter() {
        var queue = OutboundQueue(maxBytes: 100, maxTexts: 3)
        #expect(queue.enqueue(bytes: 60) == .write)
        #expect(queue.enqueue(bytes: 30) == .write)
        queue.written(bytes: 60)
        #expect(queue.enqueue(bytes: 60) == .write)
        #expect(queue.enqueue(bytes: 20) == .closeSlowConsumer(bytes: 90, texts: 2))
        #expect(queue.isSlowConsumer)
        #expect(queue.enqueue(bytes: 1) == .drop)
    }

    @Test func outboundQueueCountsTextsAndAlwaysTakesOneIntoAnEmptyQueue() {
        var queue = OutboundQueue(maxBytes: 10, maxTexts: 2)
        #expect(queue.enqueue(bytes: 1000) == .write)
        queue.written(bytes: 1000)
        #expect(queue.enqueue(bytes: 1) == .write)
        #expect(queue.enqueue(bytes: 1) == .write)
        #expect(queue.enqueue(bytes: 1) == .closeSlowConsumer(bytes: 2, texts: 2))
    }

    @Test func offerNumbersMustBeCanonicalDecimals() {
        for bad in ["-1", "-0", "18446744073709551616", "1e3", "0x10", "", " 5", "5 ", "5.0", "+5", "５", "05", "00"] {
            #expect(UploadOffer.decimal(bad) == nil, "\(bad)")
        }
        #expect(UploadOffer.decimal("0") == 0)
        #expect(UploadOffer.decimal("5") == 5)
        #expect(UploadOffer.decimal("18446744073709551615") == .max)
    }

    @Test func aPresentButMalformedSizeIsAProtocolError() {
        let fields = [
            "upload": "0123456789abcdef", "name": "a", "block_size": "4096", "mtime": "1", "kind": "file", "size": "+5",
        ]
        #expect(throws: XferError.self) { try UploadOffer(fields: fields, maxBlockSize: 1 << 20, maxFileSize: 1 << 40) }
        var stream = fields
        stream["size"] = nil
        #expect((try? UploadOffer(fields: stream, maxBlockSize: 1 << 20, maxFileSize: 1 << 40))?.size == nil)
    }

    @Test func echoModeNeedsNoHandshakeAndEchoesEveryMessage() {
        var machine = ServerConnectionStateMachine(mode: .echo)
        #expect(machine.isOpen)
        #expect(machine.textReceived("hello", isKnownZone: { _ in false }) == .echo)
        #expect(machine.binaryReceived() == .echo)
        #expect(machine.closeReceived(code: 1000) == .echoAndClose(code: 1000))
        #expect(machine.binaryReceived() == .ignore)
    }

    @Test func plainClientsCannotSendBinaryFrames() {
        let machine = ServerConnectionStateMachine(mode: .plain)
        guard case .fail(let code, _) = machine.binaryReceived() else {
            Issue.record("a plain client's binary frame was not refused")
            return
        }
        #expect(code == .unsupportedData)
        #expect(XferError.closeCode(for: code) == 1003)
        #expect(ServerConnectionStateMachine(mode: .xfer).binaryReceived() == .decode)
    }

    @Test func aSlowConsumerIsWorthReconnecting() {
        #expect(XferError.closeCode(for: .slowConsumer) == 1013)
        #expect(XferError.exitStatus(for: .slowConsumer) == 75)
        #expect(ReconnectPolicy.retryableCodes.contains(.slowConsumer))
    }
}
