import Foundation
import Testing

/// `xfer listen`, relayed sends, serve's stdin commands and heart-beating, through the real binary.
@Suite(.timeLimit(.minutes(2)))
struct ListenAndRelayTests {
    /// Starts `xfer listen` against `server` and waits until it is connected.
    func startListener(_ server: TestServer, _ extra: [String] = []) async throws -> RunningProcess {
        let listener = try RunningProcess(
            executable: TestPaths.binary.path,
            arguments: ["listen", "--server", server.url] + extra
        )
        try await listener.waitForEvent { $0.event == "connected" }
        return listener
    }

    @Test func listenersReceiveRelayedTextsWithSequenceNumbers() async throws {
        let server = try await TestServer()
        let ops1 = try await self.startListener(server, ["--name", "ops"])
        let ops2 = try await self.startListener(server, ["--name", "ops"])
        let other = try await self.startListener(server, ["--name", "dev"])

        let toOps = try await xfer("send", "--server", server.url, "--to", "ops", "deploy ✓", "second")
        #expect(toOps.status == 0, "\(toOps.stderr)")
        let statuses = toOps.events.filter { $0.event == "status" }
        #expect(statuses.map { $0.int("delivered") } == [2, 2])
        let toAll = try await xfer("send", "--server", server.url, "--all", "everyone")
        #expect(toAll.events.first { $0.event == "status" }?.int("delivered") == 3)

        for listener in [ops1, ops2] {
            let texts = try await listener.waitForEvents(count: 3) { $0.event == "text" }
            #expect(texts.map { $0.string("text") } == ["deploy ✓", "second", "everyone"])
            #expect(texts.map { $0.int("seq") } == [1, 2, 3])
            #expect(texts.allSatisfy { $0.string("from")?.hasPrefix("client-") == true })
        }
        let devTexts = try await other.waitForEvents(count: 1) { $0.event == "text" }
        #expect(devTexts.map { $0.string("text") } == ["everyone"])
        #expect(devTexts.first?.int("seq") == 1)

        let unknown = try await xfer("send", "--server", server.url, "--to", "nobody", "hello?")
        #expect(unknown.status == 65)
        let status = try #require(unknown.events.first { $0.event == "status" })
        #expect(status.bool("ok") == false)
        #expect(status.string("code") == "no_listener")
        #expect(status.string("reason")?.contains("nobody") == true)

        for listener in [ops1, ops2, other] {
            listener.signal(SIGINT)
            #expect(await listener.waitForExit() == 0)
            #expect(listener.events.last?.event == "disconnected")
            #expect(listener.events.last?.int("code") == 1000)
        }
        await server.stop()
        try await expectValidEvents(
            ops1.lines + ops2.lines + other.lines + toOps.lines + toAll.lines + unknown.lines + server.process.lines
        )
    }

    @Test func textsForAnAbsentListenerAreHeldAndDelivered() async throws {
        let server = try await TestServer()
        let first = try await self.startListener(server, ["--name", "cam"])
        _ = try await xfer("send", "--server", server.url, "--to", "cam", "one")
        try await first.waitForEvent { $0.event == "text" }
        first.signal(SIGINT)
        await first.waitForExit()

        let held = try await xfer("send", "--server", server.url, "--to", "cam", "two", "three")
        #expect(held.status == 0)
        #expect(held.events.filter { $0.event == "status" }.map { $0.int("held") } == [1, 1])
        #expect(held.events.filter { $0.event == "status" }.map { $0.int("delivered") } == [0, 0])

        let second = try await self.startListener(server, ["--name", "cam"])
        let texts = try await second.waitForEvents(count: 2) { $0.event == "text" }
        #expect(texts.map { $0.string("text") } == ["two", "three"])
        #expect(texts.map { $0.int("seq") } == [2, 3])
        second.signal(SIGTERM)
        #expect(await second.waitForExit() == 0)
        await server.stop()
    }

    @Test func listenSinceResumesAfterTheGivenSeqAndReportsWhatIsNoLongerHeld() async throws {
        let server = try await TestServer(["--hold-messages", "3"])
        let first = try await self.startListener(server, ["--name", "cam"])
        _ = try await xfer("send", "--server", server.url, "--to", "cam", "one")
        try await first.waitForEvent { $0.event == "text" }
        first.signal(SIGINT)
        await first.waitForExit()
        let away = try await xfer("send", "--server", server.url, "--to", "cam", "two", "three", "four", "five", "six")
        #expect(away.status == 0)

        // Printed up to seq 1; only the last 3 texts are held: 2 and 3 are reported missed, 4-6 printed once.
        let second = try await self.startListener(server, ["--name", "cam", "--since", "1"])
        let missed = try await second.waitForEvent { $0.event == "missed" }
        #expect(missed.int("since") == 1)
        #expect(missed.int("count") == 2)
        #expect(missed.string("name") == "cam")
        let texts = try await second.waitForEvents(count: 3) { $0.event == "text" }
        #expect(texts.map { $0.int("seq") } == [4, 5, 6])
        #expect(texts.map { $0.string("text") } == ["four", "five", "six"])
        second.signal(SIGTERM)
        #expect(await second.waitForExit() == 0)

        // Up to date: nothing is printed again.
        let third = try await self.startListener(server, ["--name", "cam", "--since", "6"])
        _ = try await xfer("send", "--server", server.url, "--to", "cam", "seven")
        let next = try await third.waitForEvent { $0.event == "text" }
        #expect(next.int("seq") == 7)
        third.signal(SIGTERM)
        #expect(await third.waitForExit() == 0)
        #expect(third.lines.filter { $0.contains(#""event":"text""#) }.count == 1)
        await server.stop()
        try await expectValidEvents(second.lines + third.lines)
    }

    @Test func listenSinceNeedsAName() async throws {
        let result = try await xfer("listen", "--since", "3")
        #expect(result.status == 64)
    }

    @Test func serveStdinCommandsReachClientsAndBadLinesAreReported() async throws {
        let server = try await TestServer()
        let ops = try await self.startListener(server, ["--name", "ops"])
        let plain = try RunningProcess(
            executable: "/usr/bin/env",
            arguments: ["python3", TestPaths.support("wspeer.py"), "wait", server.url, "UTC"]
        )
        try await plain.waitForEvent { $0["ready"] != nil }
        let plainClient = try await server.process.waitForEvent {
            $0.event == "connected" && $0.string("role") == "plain"
        }
        let plainID = try #require(plainClient.int("client"))

        server.process.writeStdin(#"{"cmd":"send","to":"ops","text":"for ops","ref":"r1"}"# + "\n")
        server.process.writeStdin("this is not json\n")
        server.process.writeStdin(#"{"cmd":"send","to":\#(plainID),"text":"for plain"}"# + "\n")
        server.process.writeStdin(#"{"cmd":"broadcast","text":"for all"}"# + "\n")
        server.process.writeStdin(#"{"cmd":"send","to":"ghost","text":"x"}"# + "\n")
        server.process.writeStdin(#"{"cmd":"clients"}"# + "\n")
        server.process.writeStdin(#"{"cmd":"explode"}"# + "\n")

        let sent = try await server.process.waitForEvents(count: 4) { $0.event == "sent" }
        #expect(sent.map { $0.int("delivered") } == [1, 1, 2, 0])
        #expect(sent.map { $0.bool("ok") } == [true, true, true, false])
        #expect(sent.last?.string("code") == "no_listener")
        #expect(sent.first?.string("ref") == "r1")
        let errors = try await server.process.waitForEvents(count: 2) { $0.event == "error" }
        #expect(errors.map { $0.string("code") } == ["bad_command", "bad_command"])
        let clients = try await server.process.waitForEvent { $0.event == "clients" }
        #expect(clients.int("count") == 2)
        let listing = try #require(clients["clients"] as? [[String: Any]])
        #expect(listing.contains { $0["name"] as? String == "ops" })

        let opsTexts = try await ops.waitForEvents(count: 2) { $0.event == "text" }
        #expect(opsTexts.map { $0.string("text") } == ["for ops", "for all"])
        #expect(opsTexts.allSatisfy { $0.string("from") == "server" })
        let plainMessages = try await plain.waitForEvents(count: 2) { $0["message"] != nil }
        let decoded = plainMessages.compactMap { $0.string("message").flatMap(JSONEvent.init(line:)) }
        #expect(decoded.map { $0.string("text") } == ["for plain", "for all"])
        #expect(decoded.map { $0.int("seq") } == [1, 2])
        #expect(decoded.allSatisfy { $0.string("from") == "server" && $0["ok"] == nil })

        // Still serving after the bad lines, and after stdin closes.
        server.process.closeStdin()
        let after = try await xfer("send", "--server", server.url, "after EOF")
        #expect(after.status == 0)
        ops.signal(SIGINT)
        await ops.waitForExit()
        await server.stop()
        await plain.waitForExit()
        try await expectValidEvents(server.process.lines + ops.lines)
    }

    @Test func bothSidesReportPingRoundTrips() async throws {
        let server = try await TestServer(["--ping-interval", "0.2", "--ping-timeout", "5"])
        let listener = try await self.startListener(server, ["--ping-interval", "0.2", "--ping-timeout", "5"])
        let clientPing = try await listener.waitForEvent { $0.event == "ping" }
        #expect((clientPing["rtt_ms"] as? NSNumber)?.doubleValue ?? -1 >= 0)
        let serverPing = try await server.process.waitForEvent { $0.event == "ping" }
        #expect(serverPing.int("client") != nil)
        #expect((serverPing["rtt_ms"] as? NSNumber)?.doubleValue ?? -1 >= 0)
        listener.signal(SIGINT)
        await listener.waitForExit()
        await server.stop()
        try await expectValidEvents(server.process.lines + listener.lines)
    }

    @Test func silentPeerIsDisconnectedWithReasonTimeout() async throws {
        let server = try await TestServer(["--ping-interval", "0.5", "--ping-timeout", "1.5"])
        let peer = try await wsPeer("silent", server.url, "UTC", "4")
        #expect(peer.events.last?.bool("server_closed") == true, "\(peer.lines) \(peer.stderr)")
        let gone = try await server.process.waitForEvent { $0.event == "disconnected" }
        #expect(gone.string("reason") == "timeout")
        await server.stop()
    }

    @Test func listenerDetectsAFrozenServerAndReconnects() async throws {
        let server = try await TestServer(["--ping-interval", "0.3", "--ping-timeout", "60"])
        let listener = try await self.startListener(
            server,
            ["--name", "watch", "--ping-interval", "0.3", "--ping-timeout", "1.2"]
        )
        // SIGSTOP keeps the TCP connection open but silent: a half-open peer from the listener's side.
        server.process.signal(SIGSTOP)
        let lost = try await listener.waitForEvent(timeout: 30) { $0.event == "disconnected" }
        #expect(lost.string("reason") == "timeout")
        try await listener.waitForEvent { $0.event == "reconnecting" }
        server.process.signal(SIGCONT)
        _ = try await listener.waitForEvents(count: 2, timeout: 45) { $0.event == "connected" }
        listener.signal(SIGINT)
        #expect(await listener.waitForExit() == 0)
        await server.stop()
        try await expectValidEvents(listener.lines)
    }

    @Test func listenerSurvivesAServerRestartOnTheSamePort() async throws {
        let directory = try TestPaths.temporaryDirectory()
        let first = try await TestServer(directory: directory)
        let port = first.port
        let listener = try await self.startListener(first, ["--name", "ops", "--max-backoff", "0.5"])
        await first.stop()
        try await listener.waitForEvent { $0.event == "disconnected" && $0.string("reason") == "shutdown" }
        try await listener.waitForEvent { $0.event == "reconnecting" }

        let second = try RunningProcess(
            executable: TestPaths.binary.path,
            arguments: ["serve", "--port", String(port), "--dir", directory.path]
        )
        try await second.waitForEvent { $0.event == "listening" }
        try await second.waitForEvent(timeout: 30) { $0.event == "connected" && $0.string("name") == "ops" }
        let sent = try await xfer("send", "--server", "ws://127.0.0.1:\(port)", "--to", "ops", "after restart")
        #expect(sent.status == 0)
        try await listener.waitForEvent { $0.event == "text" && $0.string("text") == "after restart" }
        listener.signal(SIGINT)
        #expect(await listener.waitForExit() == 0)
        second.signal(SIGTERM)
        #expect(await second.waitForExit() == 0)
    }

    @Test func noReconnectExits69WhenTheServerDies() async throws {
        let server = try await TestServer()
        let listener = try await self.startListener(server, ["--no-reconnect"])
        server.process.signal(SIGKILL)
        await server.process.waitForExit()
        #expect(await listener.waitForExit() == 69)
        #expect(listener.events.last?.event == "error")
        #expect(listener.events.last?.string("code") == "connection_lost")
    }
}
