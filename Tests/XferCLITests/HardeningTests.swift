import Foundation
import Testing

/// Runs a Tests/Support/hostile.py mode and returns its JSON lines.
func hostile(_ arguments: String..., timeout: Double = 60) async throws -> CommandResult {
    try await runCommand(
        ["python3", TestPaths.support("hostile.py")] + arguments,
        executable: "/usr/bin/env",
        timeout: timeout
    )
}

/// Issue 10: hostile and broken peers cost the server a bounded amount and get the answers RFC 6455 and the man
/// page promise, through the real binary.
@Suite(.timeLimit(.minutes(3)))
struct HardeningTests {
    @Test func aPlainClientThatNeverReadsItsStatusesCannotGrowTheServer() async throws {
        let server = try await TestServer()
        let pid = String(server.process.process.processIdentifier)
        let result = try await hostile("flood", server.url, pid, "8")
        let report = try #require(result.events.first, "\(result.lines) \(result.stderr)")
        // Hundreds of thousands of messages went out; the server stopped reading once their statuses backed up.
        #expect((report.int("frames") ?? 0) > 100_000, "\(report)")
        #expect((report.int("rss_growth_kib") ?? .max) < 16 * 1024, "server grew: \(report)")
        let after = try await xfer("send", "--server", server.url, "still serving")
        #expect(after.status == 0)
        await server.stop()
    }

    @Test func aPlainClientThatDoesNotReadItsTextsIsClosedAsASlowConsumer() async throws {
        let server = try await TestServer(["--max-queued-bytes", "256K"])
        let stalled = try RunningProcess(
            executable: "/usr/bin/env",
            arguments: ["python3", TestPaths.support("hostile.py"), "stall", server.url, "UTC", "30"]
        )
        let connected = try await server.process.waitForEvent { $0.event == "connected" }
        let client = try #require(connected.int("client"))
        let text = String(repeating: "t", count: 8000)
        let count = 4000
        server.process.writeStdin(
            (1...count).map { #"{"cmd":"broadcast","text":"\#(text)","ref":"b\#($0)"}"# }.joined(separator: "\n") + "\n"
        )
        let sent = try await server.process.waitForEvents(count: count, timeout: 60) { $0.event == "sent" }
        let error = try await server.process.waitForEvent {
            $0.event == "error" && $0.string("code") == "slow_consumer"
        }
        #expect(error.int("client") == client)
        let gone = try await server.process.waitForEvent { $0.event == "disconnected" && $0.int("client") == client }
        #expect(gone.int("code") == 1013)
        // Texts refused by the slow consumer are not counted as delivered.
        let delivered = sent.filter { $0.int("delivered") == 1 }.count
        #expect(delivered > 0 && delivered < count, "delivered \(delivered) of \(count)")
        #expect(sent.last?.int("delivered") == 0)
        stalled.signal(SIGKILL)
        await stalled.waitForExit()
        await server.stop()
        try await expectValidEvents(server.process.lines)
    }

    @Test func aStoppedListenerIsClosedAsASlowConsumerAndReconnects() async throws {
        let server = try await TestServer(["--max-queued-bytes", "256K"])
        let listener = try RunningProcess(
            executable: TestPaths.binary.path,
            arguments: ["listen", "--server", server.url, "--name", "ops", "--max-backoff", "1"]
        )
        try await listener.waitForEvent { $0.event == "connected" }
        let connected = try await server.process.waitForEvent { $0.event == "connected" }
        listener.signal(SIGSTOP)
        let text = String(repeating: "s", count: 8000)
        server.process.writeStdin(
            (1...4000).map { _ in #"{"cmd":"send","to":"ops","text":"\#(text)"}"# }.joined(separator: "\n") + "\n"
        )
        try await server.process.waitForEvent(timeout: 60) {
            $0.event == "error" && $0.string("code") == "slow_consumer" && $0.int("client") == connected.int("client")
        }
        try await server.process.waitForEvent {
            $0.event == "disconnected" && $0.int("client") == connected.int("client")
        }
        listener.signal(SIGCONT)
        // Worth reconnecting: the listener comes back by itself.
        try await listener.waitForEvent(timeout: 30) { $0.event == "reconnecting" }
        _ = try await listener.waitForEvents(count: 2, timeout: 30) { $0.event == "connected" }
        listener.signal(SIGTERM)
        await listener.waitForExit()
        await server.stop()
        try await expectValidEvents(server.process.lines)
        try await expectValidEvents(listener.lines)
    }

    /// RFC 6455 sections 5.1, 5.2, 5.5.1 and 7.4 on the server: bad frames and close frames get 1002 or 1007.
    @Test(arguments: [
        ("RSV1 set", "193", "1", "6869", 1002),
        ("RSV2 set", "161", "1", "6869", 1002),
        ("RSV3 set", "145", "1", "6869", 1002),
        ("unmasked", "129", "0", "6869", 1002),
        ("close 0", "136", "1", "0000", 1002),
        ("close 999", "136", "1", "03e7", 1002),
        ("close 1004", "136", "1", "03ec", 1002),
        ("close 1005", "136", "1", "03ed", 1002),
        ("close 1006", "136", "1", "03ee", 1002),
        ("close 1016", "136", "1", "03f8", 1002),
        ("close 1100", "136", "1", "044c", 1002),
        ("close 2000", "136", "1", "07d0", 1002),
        ("close 2999", "136", "1", "0bb7", 1002),
        ("close 5000", "136", "1", "1388", 1002),
        ("1-byte close", "136", "1", "03", 1002),
        ("close reason not UTF-8", "136", "1", "03e8fffe", 1007),
        ("close 1000", "136", "1", "03e8", 1000),
        ("close 3000", "136", "1", "0bb8", 3000),
        ("close 4999", "136", "1", "1387", 4999),
        ("plain binary frame", "130", "1", "0102", 1003),
    ])
    func badFramesAndCloseCodesGetTheRFCAnswer(
        _ name: String,
        _ first: String,
        _ masked: String,
        _ payload: String,
        _ expected: Int
    ) async throws {
        let server = try await TestServer()
        let result = try await hostile("frame", server.url, "UTC", first, masked, payload)
        #expect(result.events.last?.int("closed") == expected, "\(name): \(result.lines) \(result.stderr)")
        if expected == 1003 {
            let reply = result.events.first?["reply"] as? [String: Any]
            #expect(reply?["code"] as? String == "unsupported_data")
            #expect((reply?["message"] as? String)?.contains("version") == false)
        }
        await server.stop()
    }

    /// RFC 6455 on the client: a server that sends RSV bits, masked frames or bad close frames is answered with
    /// 1002 or 1007, and the command fails with `protocol_error` or `invalid_utf8`.
    @Test(arguments: [
        ("rsv", 1002, "protocol_error"), ("masked", 1002, "protocol_error"), ("close0", 1002, "protocol_error"),
        ("close1byte", 1002, "protocol_error"), ("closeutf8", 1007, "invalid_utf8"),
    ])
    func theClientRefusesBadServerFrames(_ mode: String, _ expected: Int, _ code: String) async throws {
        let fake = try RunningProcess(
            executable: "/usr/bin/env",
            arguments: ["python3", TestPaths.support("hostile.py"), "fakeserver", mode]
        )
        let port = try #require(try await fake.waitForEvent { $0.int("port") != nil }.int("port"))
        let result = try await xfer("send", "--server", "127.0.0.1:\(port)", "hi")
        #expect(result.status == 65, "\(result.lines) \(result.stderr)")
        #expect(result.events.last?.string("code") == code, "\(result.lines)")
        await fake.waitForExit()
        #expect(fake.events.last?.int("closed") == expected, "\(fake.lines) \(fake.stderr)")
    }

    @Test func aMalformedUploadSizeIsRefusedWith1002() async throws {
        let server = try await TestServer()
        let bad = ["-1", "-0", "18446744073709551616", "1e3", "0x10", "", " 5", "5.0", "+5", "５", "05"]
        let result = try await hostile("offers", server.url, "5", "-", "0", "18446744073709551615")
        #expect(result.events.map { $0.int("accept") } == [0, 0, 0, nil], "\(result.lines) \(result.stderr)")
        let refused = try await runCommand(
            ["python3", TestPaths.support("hostile.py"), "offers", server.url] + bad,
            executable: "/usr/bin/env"
        )
        #expect(refused.events.count == bad.count, "\(refused.lines) \(refused.stderr)")
        for answer in refused.events {
            #expect(answer.string("error") == "protocol_error", "\(answer)")
            #expect(answer.int("closed") == 1002, "\(answer)")
        }
        await server.stop()
    }

    @Test func upgradesThatAreNotHTTP11GetAre400() async throws {
        let server = try await TestServer()
        for line in ["POST / HTTP/1.1 +ws", "PUT / HTTP/1.1 +ws", "DELETE / HTTP/1.1 +ws", "GET / HTTP/1.0 +ws"] {
            let result = try await hostile("http", server.url, line)
            #expect(result.events.first?.int("status") == 400, "\(line): \(result.lines) \(result.stderr)")
        }
        let health = try await hostile("http", server.url, "GET /health HTTP/1.0")
        #expect(health.events.first?.int("status") == 200)
        #expect(health.events.first?.bool("closed") == true, "HTTP/1.0 /health kept the connection open")
        let kept = try await hostile("http", server.url, "GET /health HTTP/1.1")
        #expect(kept.events.first?.bool("closed") == false)
        await server.stop()
    }

    @Test func anOversizedTokenGetsAClearRefusal() async throws {
        let server = try await TestServer(["--token", "s3cret"])
        let token = String(repeating: "a", count: 90_000)
        let raw = try await hostile("http", server.url, "GET / HTTP/1.1 +ws", "Authorization: Bearer \(token)")
        #expect(raw.events.first?.int("status") == 431, "\(raw.lines) \(raw.stderr)")
        let result = try await xfer("send", "--server", server.url, "--token", token, "hi")
        #expect(result.status == 77, "\(result.stderr)")
        #expect(result.events.last?.string("code") == "unauthorized")
        #expect(result.stderr.contains("token"))
        await server.stop()
    }

    @Test func connectionsPerAddressAreLimited() async throws {
        let server = try await TestServer(["--max-connections-per-address", "2"])
        let first = try RunningProcess(
            executable: "/usr/bin/env",
            arguments: ["python3", TestPaths.support("hostile.py"), "stall", server.url, "UTC", "20"]
        )
        let second = try RunningProcess(
            executable: "/usr/bin/env",
            arguments: ["python3", TestPaths.support("hostile.py"), "stall", server.url, "UTC", "20"]
        )
        _ = try await server.process.waitForEvents(count: 2) { $0.event == "connected" }
        let third = try await xfer("send", "--server", server.url, "over the limit")
        #expect(third.status == 75, "\(third.stderr)")
        #expect(third.events.last?.string("code") == "too_many_connections")
        first.signal(SIGKILL)
        await first.waitForExit()
        try await server.process.waitForEvent { $0.event == "disconnected" }
        let fits = try await xfer("send", "--server", server.url, "fits again")
        #expect(fits.status == 0, "\(fits.stderr)")
        second.signal(SIGKILL)
        await second.waitForExit()
        await server.stop()
    }
}
