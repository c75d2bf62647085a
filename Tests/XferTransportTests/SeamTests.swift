import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOWebSocket
import Synchronization
import Testing
import XferEvents

@testable import XferClientSide
@testable import XferProtocol
@testable import XferServerSide
@testable import XferTransport

/// A router that answers only when the test says so, in any order: what a router behind a bus may do.
final class DeferredMessageRouter: MessageRouter, @unchecked Sendable {
    // Touched only on the test's thread (EmbeddedChannel runs everything there).
    var pending: [(text: String, promise: EventLoopPromise<RelayResult?>)] = []
    let holdSeconds: Double = 60
    let epoch = "deferred"

    func joined(client: Int, kind: ClientKind, name: String?, resume: ResumePoint?, inbox: any TextInbox) {}
    func left(client: Int) {}

    func route(
        _ text: String,
        from: String,
        to target: RelayTarget,
        on loop: EventLoop
    ) -> EventLoopFuture<RelayResult?> {
        let promise = loop.makePromise(of: RelayResult?.self)
        self.pending.append((text, promise))
        return promise.futureResult
    }
}

/// The seams the server is built from, each on its own: fragment reassembly, plain-client frames, the HTTP route
/// table, the stdin command interpreter, and a router that answers late.
@Suite struct SeamTests {
    static func buffer(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

    @Test func fragmentsAreJoinedAcrossContinuations() {
        var reassembler = FragmentReassembler(maxMessageBytes: 100)
        guard case .incomplete = reassembler.receive(opcode: .text, fin: false, data: Self.buffer("ab")) else {
            Issue.record("first fragment")
            return
        }
        guard case .incomplete = reassembler.receive(opcode: .continuation, fin: false, data: Self.buffer("cd")) else {
            Issue.record("middle fragment")
            return
        }
        guard
            case .message(let opcode, let data) = reassembler.receive(
                opcode: .continuation,
                fin: true,
                data: Self.buffer("e")
            )
        else {
            Issue.record("last fragment")
            return
        }
        #expect(opcode == .text)
        #expect(String(buffer: data) == "abcde")
        guard case .message(.binary, _) = reassembler.receive(opcode: .binary, fin: true, data: Self.buffer("x")) else {
            Issue.record("a whole frame after a joined message")
            return
        }
    }

    @Test func fragmentRulesOfRFC6455AreEnforced() {
        var reassembler = FragmentReassembler(maxMessageBytes: 100)
        guard case .protocolViolation = reassembler.receive(opcode: .continuation, fin: true, data: Self.buffer("x"))
        else {
            Issue.record("a continuation with nothing to continue was accepted")
            return
        }
        _ = reassembler.receive(opcode: .text, fin: false, data: Self.buffer("a"))
        guard case .protocolViolation = reassembler.receive(opcode: .binary, fin: true, data: Self.buffer("b")) else {
            Issue.record("a new message inside a fragmented one was accepted")
            return
        }
        var small = FragmentReassembler(maxMessageBytes: 4)
        _ = small.receive(opcode: .text, fin: false, data: Self.buffer("abc"))
        guard case .tooLarge = small.receive(opcode: .continuation, fin: false, data: Self.buffer("de")) else {
            Issue.record("a message over the limit was kept")
            return
        }
    }

    static func object(_ frame: PlainClientFrame) throws -> [String: Any] {
        let value = try JSONSerialization.jsonObject(with: Data(frame.json))
        return try #require(value as? [String: Any])
    }

    @Test func plainClientFramesAreJSONThatTellsStatusesFromTexts() throws {
        let ok = try Self.object(.status(.init(id: 3, ok: true)))
        #expect(ok["ok"] as? Bool == true)
        #expect(ok["id"] as? Int == 3)
        #expect(ok["delivered"] == nil)
        let relayed = try Self.object(
            .status(.init(id: 4, ok: false, relayed: true, code: "no_listener", reason: "no \"ops\""))
        )
        #expect(relayed["delivered"] as? Int == 0)
        #expect(relayed["held"] as? Int == 0)
        #expect(relayed["code"] as? String == "no_listener")
        #expect(relayed["reason"] as? String == "no \"ops\"")
        let text = try Self.object(.text(seq: 9, from: "server", text: "line\n\"quoted\" ünï"))
        #expect(text["ok"] == nil)
        #expect(text["seq"] as? Int == 9)
        #expect(text["text"] as? String == "line\n\"quoted\" ünï")
        let error = try Self.object(.error(code: "bad_timezone", message: "use UTC"))
        #expect(error["ok"] as? Bool == false)
        #expect(error["message"] as? String == "use UTC")
    }

    @Test func routesMatchMethodAndPathIgnoringTheQuery() {
        var routes = HTTPRoutes()
        routes.add(.GET, "/health") { _ in HTTPRoutes.Response(status: .ok, json: "{}") }
        func head(_ method: HTTPMethod, _ uri: String) -> HTTPRequestHead {
            HTTPRequestHead(version: .http1_1, method: method, uri: uri)
        }
        #expect(routes.match(head(.GET, "/health")) != nil)
        #expect(routes.match(head(.GET, "/health?token=x")) != nil)
        #expect(routes.match(head(.POST, "/health")) == nil)
        #expect(routes.match(head(.GET, "/healthz")) == nil)
        #expect(routes.match(head(.GET, "/")) == nil)
        let error = HTTPRoutes.Response.error(.unauthorized, code: "unauthorized", message: "say \"please\"")
        #expect(
            String(decoding: error.body, as: UTF8.self)
                == #"{"ok":false,"code":"unauthorized","message":"say \"please\""}"# + "\n"
        )
    }

    @Test func stdinLinesParseIntoCommands() throws {
        typealias Interpreter = ServeCommandInterpreter
        #expect(try Interpreter.parse("   ").get() == nil)
        #expect(
            try Interpreter.parse(#"{"cmd":"send","to":"ops","text":"hi","ref":"a1"}"#).get()
                == .init(command: .send(to: .name("ops"), shown: "ops", text: "hi"), ref: "a1")
        )
        #expect(
            try Interpreter.parse(#"{"cmd":"send","to":7,"text":"hi","ref":2}"#).get()
                == .init(command: .send(to: .client(7), shown: "7", text: "hi"), ref: "2")
        )
        #expect(
            try Interpreter.parse(#"{"cmd":"send","to":"12","text":"hi"}"#).get()?.command
                == .send(to: .client(12), shown: "12", text: "hi")
        )
        #expect(try Interpreter.parse(#"{"cmd":"broadcast","text":"x"}"#).get()?.command == .broadcast(text: "x"))
        #expect(try Interpreter.parse(#"{"cmd":"clients"}"#).get()?.command == .clients)
        let refusals: [(String, String)] = [
            ("not json", "not a JSON object"),
            (#"{"to":"ops"}"#, "has no \"cmd\""),
            (#"{"cmd":"send","to":"ops"}"#, "send needs \"text\""),
            (#"{"cmd":"send","text":"x"}"#, "send needs \"to\""),
            (#"{"cmd":"broadcast"}"#, "broadcast needs \"text\""),
            (#"{"cmd":"reboot","ref":"r"}"#, "unknown command \"reboot\""),
        ]
        for (line, message) in refusals {
            guard case .failure(let refusal) = Interpreter.parse(line) else {
                Issue.record("\(line) was accepted")
                continue
            }
            #expect(refusal.message.contains(message), "\(refusal.message)")
        }
        guard case .failure(let refusal) = Interpreter.parse(#"{"cmd":"reboot","ref":"r"}"#) else { return }
        #expect(refusal.ref == "r")
    }

    @Test func stdinCommandsAnswerWithEventsInOrder() throws {
        let loop = EmbeddedEventLoop()
        let router = LocalMessageRouter()
        let registry = ClientRegistry()
        let sink = RecordingEventSink()
        let listener = EmbeddedChannel(loop: loop)
        router.joined(client: 1, kind: .listen, name: "ops", inbox: ChannelInbox(channel: listener, plain: true))
        let interpreter = ServeCommandInterpreter(registry: registry, router: router, sink: sink, loop: loop)
        for line in [
            #"{"cmd":"send","to":"ops","text":"one","ref":"a"}"#, #"{"cmd":"send","to":"nobody","text":"x","ref":"b"}"#,
            #"{"cmd":"broadcast","text":"two"}"#, "garbage", #"{"cmd":"clients","ref":"c"}"#,
        ] {
            try interpreter.handle(line).wait()
        }
        let lines = sink.events.map(\.jsonLine)
        #expect(sink.events.map(\.kind) == [.sent, .sent, .sent, .error, .clients])
        #expect(lines[0].contains(#""ok":true"#) && lines[0].contains(#""delivered":1"#))
        #expect(lines[1].contains(#""ok":false"#) && lines[1].contains(#""code":"no_listener""#))
        #expect(lines[2].contains(#""cmd":"broadcast""#) && lines[2].contains(#""delivered":1"#))
        #expect(lines[3].contains(#""code":"bad_command""#))
        #expect(lines[4].contains(#""count":0"#) && lines[4].contains(#""ref":"c""#))
        var texts: [String] = []
        while let frame = try listener.readOutbound(as: WebSocketFrame.self) {
            texts.append(frame.textValue)
        }
        #expect(texts == [#"{"from":"server","seq":1,"text":"one"}"#, #"{"from":"server","seq":2,"text":"two"}"#])
        _ = try? listener.finish(acceptAlreadyClosed: true)
    }

    @Test func statusesKeepMessageOrderWhenTheRouterAnswersOutOfOrder() throws {
        let router = DeferredMessageRouter()
        let connections = Connections()
        let harness = try ConnectionHarness(mode: .xfer, registry: connections, router: router)
        defer { harness.finish() }
        try harness.handshake(["timezone": "UTC", "to": "ops"])
        try harness.sendBurst([.text("first"), .text("second"), .text("third")])
        #expect(try harness.sentFrames().isEmpty, "no status before the router answers")
        #expect(router.pending.map(\.text) == ["first", "second", "third"])
        // Every text's event is out before any answer: a status never precedes its event.
        #expect(try harness.events.events("text").count == 3)
        router.pending[2].promise.succeed(RelayResult(delivered: 3, held: 0))
        router.pending[1].promise.succeed(nil)
        #expect(try harness.sentFrames().isEmpty, "the second and third wait for the first")
        router.pending[0].promise.succeed(RelayResult(delivered: 1, held: 0))
        let statuses = try harness.sentFrames().compactMap { frame -> WireMessage.Status? in
            guard case .status(let status) = frame.message else { return nil }
            return status
        }
        #expect(statuses.map(\.id) == [1, 2, 3])
        #expect(statuses.map(\.ok) == [true, false, true])
        #expect(statuses.map(\.delivered) == [1, 0, 3])
        #expect(statuses[1].code == "no_listener")
    }

    @Test func aFanOutSinkHandsEveryBatchToEverySinkInOrder() {
        let first = RecordingEventSink()
        let second = RecordingEventSink()
        let sink = FanOutEventSink([first, second])
        sink.emit([.error(code: "a", message: "1"), .error(code: "b", message: "2")])
        sink.emit(.reconnecting(attempt: 1, delayMs: 5))
        #expect(first.events.map(\.jsonLine) == second.events.map(\.jsonLine))
        #expect(first.events.map(\.kind) == [.error, .error, .reconnecting])
    }
}

/// The reconnect loop that `listen` and `upload` share, with short real delays.
@Suite struct ReconnectLoopTests {
    @Test func failuresAreRetriedWithAReconnectingEventUntilASessionEndsTheWork() async {
        let sink = RecordingEventSink()
        var sessions = 0
        let failure = await ReconnectLoop.run(
            policy: ReconnectPolicy(base: 0.01, cap: 0.02, maxRetries: nil),
            sink: sink,
            session: {
                sessions += 1
                return sessions < 3
                    ? .failed(XferError(.connectionLost, "cut"), afterWelcome: false) : .done
            }
        )
        #expect(failure == nil)
        #expect(sessions == 3)
        #expect(sink.events.map(\.kind) == [.reconnecting, .reconnecting])
        #expect(sink.events.map { $0["attempt"] } == [.int(1), .int(2)])
    }

    @Test func aFailureTheRetriesCannotMendEndsTheLoopWithThatError() async {
        let sink = RecordingEventSink()
        var sessions = 0
        let failure = await ReconnectLoop.run(
            policy: ReconnectPolicy(base: 0.01, cap: 0.02, maxRetries: 5),
            sink: sink,
            session: {
                sessions += 1
                return .failed(XferError(.superseded, "taken over"), afterWelcome: true)
            }
        )
        #expect(failure?.code == .superseded)
        #expect(sessions == 1)
        #expect(sink.events.isEmpty)
    }

    @Test func stoppingDuringTheWaitEndsTheLoopWithoutAnotherSession() async {
        let sink = RecordingEventSink()
        let stopped = StopFlag()
        var sessions = 0
        let failure = await ReconnectLoop.run(
            policy: ReconnectPolicy(base: 60, cap: 60, maxRetries: nil),
            sink: sink,
            isStopped: { stopped.value.load(ordering: .relaxed) },
            session: {
                sessions += 1
                // A thread of its own, like the signal handler that stops `xfer listen`: the wait is 30-60 s.
                Thread.detachNewThread {
                    usleep(100_000)
                    stopped.value.store(true, ordering: .relaxed)
                }
                return .failed(XferError(.connectionLost, "cut"), afterWelcome: false)
            }
        )
        #expect(failure == nil)
        #expect(sessions == 1)
    }
}

/// A flag a task sets while the loop waits.
final class StopFlag: Sendable {
    let value = Atomic<Bool>(false)
}

/// An inbox whose connection dies while a text is written to it, as a channel whose peer reset the connection
/// closes inside the write: the connection leaves the router from inside the delivery.
final class DyingInbox: TextInbox, @unchecked Sendable {
    // Set once before use.
    var router: LocalMessageRouter?
    let client: Int
    let texts = Mutex<[String]>([])

    init(client: Int) {
        self.client = client
    }

    func deliver(seq: UInt64, from: String, text: String) -> Bool {
        self.texts.withLock { $0.append(text) }
        self.router?.left(client: self.client)
        return true
    }

    func fail(_ error: XferError) {
        self.router?.left(client: self.client)
    }

    func missed(since: UInt64, count: UInt64) {}
}

@Suite struct LocalMessageRouterTests {
    @Test func aConnectionThatLeavesInsideADeliveryDoesNotDeadlockTheRouter() {
        let router = LocalMessageRouter()
        let dying = DyingInbox(client: 1)
        dying.router = router
        router.joined(client: 1, kind: .listen, name: "ops", inbox: dying)
        #expect(router.route("first", from: "a", to: .name("ops")) == RelayResult(delivered: 1, held: 0))
        // It left during the first delivery: the second text is held for its name.
        #expect(router.route("second", from: "a", to: .name("ops")) == RelayResult(delivered: 0, held: 1))
        #expect(dying.texts.withLock { $0 } == ["first"])
    }
}
