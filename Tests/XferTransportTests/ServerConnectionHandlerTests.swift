import Foundation
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing
import XferEvents

@testable import XferClientSide
@testable import XferProtocol
@testable import XferServerSide
@testable import XferTransport

/// Drives `ServerConnectionHandler` on an `EmbeddedChannel` with WebSocket frames and checks frames and events.
@Suite struct ServerConnectionHandlerTests {
    /// The JSON object in a plain client's status frame.
    static func status(_ frame: WebSocketFrame) throws -> [String: Any] {
        #expect(frame.opcode == .text)
        let value = try JSONSerialization.jsonObject(with: Data(frame.textValue.utf8))
        return try #require(value as? [String: Any], "not a JSON object: \(frame.textValue)")
    }

    // MARK: Plain clients

    @Test func plainTimezoneThenTextsGetNumberedJSONStatuses() throws {
        let harness = try ConnectionHarness(mode: .plain)
        defer { harness.finish() }
        try harness.send(.text("Europe/Paris"))
        #expect(try harness.sentFrames().isEmpty, "plain clients get no welcome")
        for text in ["one", "two", "three"] {
            try harness.send(.text(text))
        }
        let frames = try harness.sentFrames()
        #expect(frames.map(\.textValue) == [#"{"ok":true,"id":1}"#, #"{"ok":true,"id":2}"#, #"{"ok":true,"id":3}"#])
        #expect(frames.allSatisfy { $0.fin && $0.maskKey == nil }, "servers do not mask (RFC 6455 section 5.1)")

        let events = try harness.events.events()
        #expect(events.map { $0["event"] as? String } == ["connected", "text", "text", "text"])
        #expect(events[0]["client"] as? Int == 1)
        #expect(events[0]["timezone"] as? String == "Europe/Paris")
        #expect(events[0]["protocol"] as? String == "plain")
        #expect(events[0]["peer"] as? String == "127.0.0.1:40000")
        #expect(events.dropFirst().map { $0["text"] as? String } == ["one", "two", "three"])
        #expect(events.dropFirst().map { $0["id"] as? Int } == [1, 2, 3])
        #expect(harness.registry.count == 1)
    }

    @Test func plainBurstGetsOneStatusPerMessage() throws {
        let harness = try ConnectionHarness(mode: .plain)
        defer { harness.finish() }
        try harness.sendBurst([.text("UTC"), .text("a"), .text("b")])
        let ids = try harness.sentFrames().map { try Self.status($0)["id"] as? Int }
        #expect(ids == [1, 2])
    }

    @Test func maskedClientFramesAreUnmasked() throws {
        let harness = try ConnectionHarness(mode: .plain)
        defer { harness.finish() }
        let key: WebSocketMaskingKey = [0x12, 0x34, 0x56, 0x78]
        for text in ["UTC", "masked ünïcødé"] {
            var data = ByteBuffer(string: text)
            data.webSocketMask(key)
            try harness.send(WebSocketFrame(fin: true, opcode: .text, maskKey: key, data: data))
        }
        #expect(try harness.events.events("text").first?["text"] as? String == "masked ünïcødé")
    }

    @Test func plainBadTimezoneGetsAnErrorStatusAndClose1008() throws {
        let harness = try ConnectionHarness(mode: .plain)
        defer { harness.finish() }
        try harness.send(.text("Mars/Olympus"))
        let frames = try harness.sentFrames()
        try #require(frames.count == 2)
        let status = try Self.status(frames[0])
        #expect(status["ok"] as? Bool == false)
        #expect(status["code"] as? String == "bad_timezone")
        #expect(frames[1].opcode == .connectionClose)
        #expect(frames[1].closeCode == 1008)
        #expect(frames[1].unmaskedData.readableBytes <= 125, "control frames carry at most 125 bytes (RFC 6455 5.5)")
        #expect(try harness.events.events("error").first?["code"] as? String == "bad_timezone")
        #expect(harness.registry.count == 0)
    }

    @Test func invalidUTF8TextClosesWith1007() throws {
        let harness = try ConnectionHarness(mode: .plain)
        defer { harness.finish() }
        try harness.send(.text("UTC"))
        try harness.send(.bytes(.text, [0x66, 0xC3, 0x28]))
        let frames = try harness.sentFrames()
        try #require(frames.count == 2)
        #expect(try Self.status(frames[0])["code"] as? String == "invalid_utf8")
        #expect(frames[1].opcode == .connectionClose)
        #expect(frames[1].closeCode == 1007)
        #expect(try harness.events.events("error").map { $0["code"] as? String } == ["invalid_utf8"])
        #expect(try harness.events.events("text").isEmpty)

        // The peer answers our close: the closing handshake is complete and the socket closes.
        try harness.send(.close(1007))
        #expect(!harness.channel.isActive)
        #expect(try harness.sentFrames().isEmpty, "a close that answers ours is not echoed")
        let disconnected = try #require(try harness.events.events("disconnected").first)
        #expect(disconnected["reason"] as? String == "error")
        #expect(disconnected["code"] as? Int == 1007)
        #expect(harness.registry.count == 0)
    }

    @Test func invalidUTF8TimezoneClosesWith1007() throws {
        let harness = try ConnectionHarness(mode: .plain)
        defer { harness.finish() }
        try harness.send(.bytes(.text, [0xFF, 0xFE]))
        #expect(try harness.sentFrames().last?.closeCode == 1007)
    }

    @Test func framesAfterOurCloseAreDropped() throws {
        let harness = try ConnectionHarness(mode: .plain)
        defer { harness.finish() }
        try harness.send(.text("UTC"))
        try harness.send(.bytes(.text, [0xC0]))
        _ = try harness.sentFrames()
        try harness.send(.text("late"))
        #expect(try harness.sentFrames().isEmpty)
        #expect(try harness.events.events("text").isEmpty)
    }

    // MARK: xfer clients

    @Test func xferHelloGetsWelcome() throws {
        let harness = try ConnectionHarness(mode: .xfer, clientID: 7)
        defer { harness.finish() }
        try harness.send(.binary(.hello(["timezone": "America/New_York", "role": "send"])))
        let frames = try harness.sentFrames()
        try #require(frames.count == 1)
        #expect(frames[0].opcode == .binary)
        let welcome = try #require(frames[0].message)
        guard case .welcome(let fields) = welcome else {
            Issue.record("expected welcome, got \(welcome)")
            return
        }
        #expect(fields["client"] == "7")
        #expect(fields["server"] == XferVersion.current)
        #expect(fields["max_text"] == "64")
        let connected = try #require(try harness.events.events("connected").first)
        #expect(connected["protocol"] as? String == "xfer.v1")
        #expect(connected["role"] as? String == "send")
        #expect(connected["timezone"] as? String == "America/New_York")
    }

    @Test func xferTextsInOneReadBurstAreAnsweredByOneAck() throws {
        let harness = try ConnectionHarness(mode: .xfer)
        defer { harness.finish() }
        try harness.handshake()
        try harness.sendBurst([.text("one"), .text("two"), .text("three")])
        #expect(try harness.sentFrames().map(\.message) == [.ack(first: 1, last: 3)])
        try harness.sendBurst([.text("four"), .text("five")])
        #expect(try harness.sentFrames().map(\.message) == [.ack(first: 4, last: 5)])
        try harness.send(.text("six"))
        #expect(try harness.sentFrames().map(\.message) == [.ack(first: 6, last: 6)])
        let texts = try harness.events.events("text")
        #expect(texts.map { $0["text"] as? String } == ["one", "two", "three", "four", "five", "six"])
        #expect(texts.map { $0["id"] as? Int } == [1, 2, 3, 4, 5, 6])
    }

    @Test func xferTextBeforeHelloIsAProtocolError() throws {
        let harness = try ConnectionHarness(mode: .xfer)
        defer { harness.finish() }
        try harness.send(.text("UTC"))
        let frames = try harness.sentFrames()
        try #require(frames.count == 2)
        guard case .error(let code, _) = try #require(frames[0].message) else {
            Issue.record("expected an error message first, got \(frames[0])")
            return
        }
        #expect(code == "protocol_error")
        #expect(frames[1].closeCode == 1002)
    }

    @Test func xferMalformedBinaryClosesWith1002() throws {
        let harness = try ConnectionHarness(mode: .xfer)
        defer { harness.finish() }
        try harness.send(.bytes(.binary, [0x09, 0x01, 0x00, 0x00]))
        #expect(try harness.sentFrames().last?.closeCode == 1002)
        #expect(try harness.events.events("error").first?["code"] as? String == "protocol_error")
    }

    @Test func xferSenderToAnAbsentListenerGetsANoListenerStatus() throws {
        let harness = try ConnectionHarness(mode: .xfer)
        defer { harness.finish() }
        try harness.handshake(["timezone": "UTC", "to": "ops"])
        try harness.send(.text("anyone?"))
        let frames = try harness.sentFrames()
        guard case .status(let status) = try #require(frames.first?.message) else {
            Issue.record("expected a status, got \(frames)")
            return
        }
        #expect(status.id == 1)
        #expect(!status.ok)
        #expect(status.relayed)
        #expect(status.code == "no_listener")
        #expect(status.reason.contains("ops"))
        #expect(try harness.events.events("text").first?["to"] as? String == "ops")
    }

    @Test func xferSenderRelaysToANamedListener() throws {
        let registry = Connections()
        let listener = try ConnectionHarness(mode: .xfer, registry: registry, clientID: 1)
        defer { listener.finish() }
        let sender = try ConnectionHarness(mode: .xfer, registry: registry, events: listener.events, clientID: 2)
        defer { sender.finish() }
        try listener.handshake(["timezone": "UTC", "role": "listen", "name": "ops"])
        try sender.handshake(["timezone": "UTC", "to": "ops", "name": "alice"])
        try sender.sendBurst([.text("first"), .text("second")])
        let statuses = try sender.sentFrames().map(\.message)
        #expect(
            statuses == [
                .status(.init(id: 1, ok: true, relayed: true, delivered: 1)),
                .status(.init(id: 2, ok: true, relayed: true, delivered: 1)),
            ]
        )
        let delivered = try listener.sentFrames().map(\.message)
        #expect(
            delivered == [
                .deliver(seq: 1, from: "alice", text: "first"), .deliver(seq: 2, from: "alice", text: "second"),
            ]
        )
    }

    @Test func returningListenerGetsWelcomeBeforeItsHeldTexts() throws {
        let registry = Connections()
        let events = EventFile()
        let sender = try ConnectionHarness(mode: .xfer, registry: registry, events: events, clientID: 1)
        defer { sender.finish() }
        let first = try ConnectionHarness(mode: .xfer, registry: registry, events: events, clientID: 2)
        try first.handshake(["timezone": "UTC", "role": "listen", "name": "ops"])
        try first.send(.close(1000))
        first.finish()

        try sender.handshake(["timezone": "UTC", "to": "ops"])
        try sender.sendBurst([.text("while away 1"), .text("while away 2")])
        let statuses = try sender.sentFrames().map(\.message)
        #expect(
            statuses == [
                .status(.init(id: 1, ok: true, relayed: true, held: 1)),
                .status(.init(id: 2, ok: true, relayed: true, held: 1)),
            ]
        )

        let second = try ConnectionHarness(mode: .xfer, registry: registry, events: events, clientID: 3)
        defer { second.finish() }
        try second.send(.binary(.hello(["timezone": "UTC", "role": "listen", "name": "ops"])))
        let frames = try second.sentFrames().compactMap(\.message)
        try #require(frames.count == 3)
        guard case .welcome = frames[0] else {
            Issue.record("the first frame to a listener must be welcome, got \(frames[0])")
            return
        }
        #expect(
            Array(frames.dropFirst()) == [
                .deliver(seq: 1, from: "client-1", text: "while away 1"),
                .deliver(seq: 2, from: "client-1", text: "while away 2"),
            ]
        )
    }

    // MARK: Frames

    @Test func pingIsAnsweredWithAPongCarryingTheSamePayload() throws {
        for mode in [ServerConnectionStateMachine.Mode.plain, .xfer] {
            let harness = try ConnectionHarness(mode: mode)
            defer { harness.finish() }
            try harness.send(.bytes(.ping, Array("payload-123".utf8)))
            let frames = try harness.sentFrames()
            #expect(frames.map(\.opcode) == [.pong])
            #expect(frames.first?.textValue == "payload-123")
        }
    }

    @Test func emptyPingGetsEmptyPong() throws {
        let harness = try ConnectionHarness(mode: .plain)
        defer { harness.finish() }
        try harness.send(.bytes(.ping, []))
        let frames = try harness.sentFrames()
        #expect(frames.map(\.opcode) == [.pong])
        #expect(frames.first?.unmaskedData.readableBytes == 0)
    }

    @Test func fragmentedTextIsReassembledEvenInsideACharacter() throws {
        let harness = try ConnectionHarness(mode: .plain)
        defer { harness.finish() }
        try harness.send(.text("UTC"))
        // "Hello wörld": the two bytes of "ö" (C3 B6) are split across frames (RFC 6455 section 5.4).
        try harness.send(.bytes(.text, Array("Hel".utf8), fin: false))
        try harness.send(.bytes(.continuation, Array("lo w".utf8) + [0xC3], fin: false))
        #expect(try harness.sentFrames().isEmpty, "no status before the final fragment")
        try harness.send(.bytes(.continuation, [0xB6] + Array("rld".utf8), fin: true))
        #expect(try harness.sentFrames().map(\.textValue) == [#"{"ok":true,"id":1}"#])
        #expect(try harness.events.events("text").first?["text"] as? String == "Hello wörld")
    }

    @Test func controlFramesMayArriveBetweenFragments() throws {
        let harness = try ConnectionHarness(mode: .plain)
        defer { harness.finish() }
        try harness.send(.text("UTC"))
        try harness.send(.text("ab", fin: false))
        try harness.send(.bytes(.ping, [1]))
        try harness.send(.bytes(.continuation, Array("cd".utf8)))
        #expect(try harness.sentFrames().map(\.opcode) == [.pong, .text])
        #expect(try harness.events.events("text").first?["text"] as? String == "abcd")
    }

    @Test func fragmentedHelloIsReassembled() throws {
        let harness = try ConnectionHarness(mode: .xfer)
        defer { harness.finish() }
        let hello = encodedBytes(.hello(["timezone": "UTC", "role": "listen", "name": "ops"]))
        try harness.send(.bytes(.binary, Array(hello.prefix(5)), fin: false))
        try harness.send(.bytes(.continuation, Array(hello.dropFirst(5))))
        guard case .welcome = try #require(try harness.sentFrames().first?.message) else {
            Issue.record("a fragmented hello was not answered with welcome")
            return
        }
    }

    @Test func continuationWithoutAStartIsAProtocolError() throws {
        let harness = try ConnectionHarness(mode: .plain)
        defer { harness.finish() }
        try harness.send(.text("UTC"))
        try harness.send(.bytes(.continuation, Array("x".utf8)))
        #expect(try harness.sentFrames().last?.closeCode == 1002)
    }

    @Test func newDataFrameInsideAFragmentedMessageIsAProtocolError() throws {
        let harness = try ConnectionHarness(mode: .plain)
        defer { harness.finish() }
        try harness.send(.text("UTC"))
        try harness.send(.text("a", fin: false))
        try harness.send(.text("b"))
        #expect(try harness.sentFrames().last?.closeCode == 1002)
    }

    @Test func textAtTheLimitIsAcceptedAndOneByteMoreClosesWith1009() throws {
        let harness = try ConnectionHarness(mode: .plain)
        defer { harness.finish() }
        try harness.send(.text("UTC"))
        try harness.send(.text(String(repeating: "a", count: 64)))
        #expect(try harness.sentFrames().map(\.textValue) == [#"{"ok":true,"id":1}"#])
        try harness.send(.text(String(repeating: "a", count: 65)))
        let frames = try harness.sentFrames()
        #expect(try Self.status(try #require(frames.first))["code"] as? String == "message_too_large")
        #expect(frames.last?.closeCode == 1009)
        #expect(try harness.events.events("text").count == 1)
    }

    @Test func fragmentsGrowingPastTheLimitCloseWith1009BeforeTheEnd() throws {
        let harness = try ConnectionHarness(mode: .plain)
        defer { harness.finish() }
        try harness.send(.text("UTC"))
        try harness.send(.text(String(repeating: "a", count: 40), fin: false))
        #expect(try harness.sentFrames().isEmpty)
        try harness.send(.bytes(.continuation, [UInt8](repeating: 0x61, count: 40), fin: false))
        #expect(try harness.sentFrames().last?.closeCode == 1009)
    }

    // MARK: Closing and timers

    @Test func peerCloseIsEchoedAndReportedAsClosed() throws {
        let harness = try ConnectionHarness(mode: .xfer)
        defer { harness.finish() }
        try harness.handshake()
        #expect(harness.registry.count == 1)
        try harness.send(.close(1000))
        let frames = try harness.sentFrames()
        #expect(frames.map(\.opcode) == [.connectionClose])
        #expect(frames.first?.closeCode == 1000)
        #expect(!harness.channel.isActive)
        let disconnected = try #require(try harness.events.events("disconnected").first)
        #expect(disconnected["reason"] as? String == "closed")
        #expect(disconnected["code"] as? Int == 1000)
        #expect(disconnected["client"] as? Int == 1)
        #expect(harness.registry.count == 0)
    }

    @Test func peerCloseWithoutBodyIsEchoedWithoutBody() throws {
        let harness = try ConnectionHarness(mode: .plain)
        defer { harness.finish() }
        try harness.send(.text("UTC"))
        try harness.send(.bytes(.connectionClose, []))
        let frames = try harness.sentFrames()
        #expect(frames.map(\.opcode) == [.connectionClose])
        #expect(frames.first?.unmaskedData.readableBytes == 0)
        let disconnected = try #require(try harness.events.events("disconnected").first)
        #expect(disconnected["code"] == nil)
    }

    @Test func pendingAckIsSentBeforeTheCloseEcho() throws {
        let harness = try ConnectionHarness(mode: .xfer)
        defer { harness.finish() }
        try harness.handshake()
        try harness.sendBurst([.text("a"), .text("b"), .close(1000)])
        let frames = try harness.sentFrames()
        #expect(frames.map(\.opcode) == [.binary, .connectionClose])
        #expect(frames.first?.message == .ack(first: 1, last: 2))
    }

    @Test func handshakeTimeoutClosesWith1008AndThenDropsTheSocket() throws {
        let harness = try ConnectionHarness(mode: .plain, handshakeDeadline: .uptimeNanoseconds(0) + .seconds(5))
        defer { harness.finish() }
        harness.channel.embeddedEventLoop.advanceTime(by: .seconds(5))
        let frames = try harness.sentFrames()
        #expect(frames.last?.closeCode == 1008)
        #expect(try harness.events.events("error").first?["code"] as? String == "handshake_timeout")
        // The peer never answers the close: the server gives up after its close timeout.
        #expect(harness.channel.isActive)
        harness.channel.embeddedEventLoop.advanceTime(by: .seconds(3))
        #expect(!harness.channel.isActive)
        let disconnected = try #require(try harness.events.events("disconnected").first)
        #expect(disconnected["reason"] as? String == "error")
        #expect(disconnected["code"] as? Int == 1008)
    }

    @Test func handshakeInTimeCancelsTheHandshakeTimer() throws {
        let harness = try ConnectionHarness(mode: .plain, handshakeDeadline: .uptimeNanoseconds(0) + .seconds(5))
        defer { harness.finish() }
        try harness.send(.text("UTC"))
        harness.channel.embeddedEventLoop.advanceTime(by: .seconds(10))
        #expect(try harness.sentFrames().isEmpty)
        #expect(harness.channel.isActive)
    }

    @Test func serverPingsEveryIntervalAndReportsTheRoundTrip() throws {
        let configuration = ConnectionHarness.configuration(pingInterval: 1, pingTimeout: 3600)
        let harness = try ConnectionHarness(mode: .plain, configuration: configuration)
        defer { harness.finish() }
        try harness.send(.text("UTC"))
        harness.channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        let pings = try harness.sentFrames()
        #expect(pings.map(\.opcode) == [.ping])
        let payload = try #require(pings.first?.unmaskedData)
        #expect(payload.readableBytes == 8)
        harness.channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(try harness.sentFrames().map(\.opcode) == [.ping], "pings repeat every interval")

        try harness.send(.masked(fin: true, opcode: .pong, data: payload))
        let ping = try #require(try harness.events.events("ping").first)
        #expect(ping["client"] as? Int == 1)
        let rtt = try #require(ping["rtt_ms"] as? Double)
        #expect(rtt >= 0 && rtt < 60_000)
    }

    @Test func unsolicitedPongsAreIgnored() throws {
        let harness = try ConnectionHarness(mode: .plain)
        defer { harness.finish() }
        try harness.send(.bytes(.pong, Array("hi".utf8)))
        #expect(try harness.sentFrames().isEmpty)
        #expect(try harness.events.events("ping").isEmpty)
        #expect(harness.channel.isActive)
    }

    @Test func silenceLongerThanThePingTimeoutDropsTheConnection() throws {
        let configuration = ConnectionHarness.configuration(pingInterval: 0.05, pingTimeout: 0.01)
        let harness = try ConnectionHarness(mode: .plain, configuration: configuration)
        defer { harness.finish() }
        try harness.send(.text("UTC"))
        // The heartbeat reads the real monotonic clock; the embedded loop's clock only fires the timer.
        usleep(50_000)
        harness.channel.embeddedEventLoop.advanceTime(by: .milliseconds(50))
        #expect(!harness.channel.isActive)
        #expect(try harness.sentFrames().isEmpty, "a silent peer gets no closing handshake")
        let disconnected = try #require(try harness.events.events("disconnected").first)
        #expect(disconnected["reason"] as? String == "timeout")
    }

    @Test func shutdownClosesWith1001AndIsReportedAsShutdown() throws {
        let harness = try ConnectionHarness(mode: .xfer)
        defer { harness.finish() }
        try harness.handshake()
        harness.channel.pipeline.fireUserInboundEventTriggered(ServerShutdownEvent())
        let frames = try harness.sentFrames()
        #expect(frames.map(\.opcode) == [.connectionClose])
        #expect(frames.first?.closeCode == 1001)
        #expect(try harness.events.events("error").isEmpty, "shutdown is not an error")
        try harness.send(.close(1001))
        #expect(!harness.channel.isActive)
        let disconnected = try #require(try harness.events.events("disconnected").first)
        #expect(disconnected["reason"] as? String == "shutdown")
        #expect(disconnected["code"] as? Int == 1001)
    }

    @Test func droppedConnectionWithoutCloseIsReportedAsError() throws {
        let harness = try ConnectionHarness(mode: .plain)
        try harness.send(.text("UTC"))
        harness.finish()
        let disconnected = try #require(try harness.events.events("disconnected").first)
        #expect(disconnected["reason"] as? String == "error")
        #expect(harness.registry.count == 0)
    }

    @Test func connectionThatNeverHandshakesGivesItsSlotBackSilently() throws {
        let registry = Connections()
        let harness = try ConnectionHarness(mode: .plain, registry: registry)
        harness.finish()
        #expect(try harness.events.events().isEmpty)
        // The harness reserved one slot; it was released, so a limit of 1 has room again.
        #expect(registry.reserveSlot(limit: 1))
    }
}

/// The encoded bytes of `message`.
func encodedBytes(_ message: WireMessage) -> [UInt8] {
    var buffer = message.encoded()
    return buffer.readBytes(length: buffer.readableBytes) ?? []
}
