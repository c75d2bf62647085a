import Foundation
import Testing

/// `xfer serve` and `xfer send` through the real binary: acknowledged text, exit codes, events.
@Suite(.timeLimit(.minutes(2)))
struct TextMessagingTests {
    @Test func sendArgumentsAreAcknowledgedAfterTheServerEmitsThem() async throws {
        let server = try await TestServer()
        let texts = ["hello", "wörld 🎉 \"quoted\" \\ back", "tab\there", "💾 日本語"]
        let result = try await runCommand(["send", "--server", server.url, "--timezone", "Europe/Paris"] + texts)
        #expect(result.status == 0, "\(result.stderr)")
        let statuses = result.events.filter { $0.event == "status" }
        #expect(statuses.map { $0.int("id") } == [1, 2, 3, 4])
        #expect(statuses.allSatisfy { $0.bool("ok") == true })
        #expect(result.events.first?.event == "connected")
        #expect(result.events.last?.event == "disconnected")
        #expect(result.events.last?.string("reason") == "closed")
        #expect(result.events.last?.int("code") == 1000)

        let received = try await server.process.waitForEvents(count: 4) { $0.event == "text" }
        #expect(received.map { $0.string("text") } == texts)
        #expect(received.map { $0.int("id") } == [1, 2, 3, 4])
        let connected = try #require(server.process.events.first { $0.event == "connected" })
        #expect(connected.string("timezone") == "Europe/Paris")
        #expect(connected.string("peer")?.hasPrefix("127.0.0.1:") == true)
        #expect(connected.int("client") == received.first?.int("client"))
        try await server.process.waitForEvent { $0.event == "disconnected" && $0.int("code") == 1000 }
        #expect(await server.stop() == 0)
        try await expectValidEvents(result.lines + server.process.lines)
    }

    @Test func stdinLinesAreMessagesIncludingEmptyOnes() async throws {
        let server = try await TestServer()
        let result = try await runCommand(
            ["send", "--server", server.url],
            stdin: "first\n\nthird\r\nlast-without-newline"
        )
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.events.filter { $0.event == "status" }.count == 4)
        let received = try await server.process.waitForEvents(count: 4) { $0.event == "text" }
        #expect(received.map { $0.string("text") } == ["first", "", "third\r", "last-without-newline"])
        await server.stop()
    }

    @Test func manyStdinLinesArePipelinedInOrder() async throws {
        let server = try await TestServer()
        let count = 20_000
        let input = (1...count).map { "line \($0) " + String(repeating: "x", count: $0 % 50) }.joined(separator: "\n")
        let result = try await runCommand(["send", "--server", server.url, "--window", "500"], stdin: input)
        #expect(result.status == 0, "\(result.stderr)")
        let statuses = result.events.filter { $0.event == "status" }
        #expect(statuses.count == count)
        #expect(
            statuses.enumerated().allSatisfy { $0.element.int("id") == $0.offset + 1 && $0.element.bool("ok") == true }
        )
        let received = try await server.process.waitForEvents(count: count) { $0.event == "text" }
        #expect(
            received.enumerated().allSatisfy { $0.element.string("text")?.hasPrefix("line \($0.offset + 1) ") == true }
        )
        await server.stop()
    }

    @Test func unreachableServerExits69WithAnErrorEvent() async throws {
        // Bind and close a port so that nothing listens on it.
        let port = try freePort()
        let result = try await xfer("send", "--server", "127.0.0.1:\(port)", "x")
        #expect(result.status == 69)
        let error = try #require(result.events.last)
        #expect(error.event == "error")
        #expect(error.string("code") == "server_unreachable")
        #expect(result.stderr.contains("cannot connect"))
        try await expectValidEvents(result.lines)
    }

    @Test func usageErrorsExit64WithAnErrorEvent() async throws {
        let both = try await xfer("send", "--to", "ops", "--all", "x")
        #expect(both.status == 64)
        #expect(both.events.last?.string("code") == "usage")
        let badURL = try await xfer("send", "--server", "http://example.com", "x")
        #expect(badURL.status == 64)
        let badZone = try await xfer("send", "--timezone", "Mars/Olympus", "x")
        #expect(badZone.status == 64)
        #expect(badZone.events.last?.string("code") == "bad_timezone")
        try await expectValidEvents(both.lines + badURL.lines + badZone.lines)
    }

    @Test func eventsPipeIntoJq() async throws {
        let server = try await TestServer()
        let script = """
            set -o pipefail
            "\(TestPaths.binary.path)" send --server \(server.url) one two three \
              | jq -r 'select(.event=="status") | "\\(.id) \\(.ok)"'
            """
        let result = try await runCommand(["-c", script], executable: "/bin/bash")
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.lines == ["1 true", "2 true", "3 true"])
        await server.stop()
    }

    @Test func tokenIsRequiredWhenConfigured() async throws {
        let server = try await TestServer(["--token", "s3cret"])
        let missing = try await xfer("send", "--server", server.url, "x")
        #expect(missing.status == 77)
        #expect(missing.events.last?.string("code") == "unauthorized")
        let wrong = try await xfer("send", "--server", server.url, "--token", "nope", "x")
        #expect(wrong.status == 77)
        let right = try await xfer("send", "--server", server.url, "x", environment: ["XFER_TOKEN": "s3cret"])
        #expect(right.status == 0, "\(right.stderr)")
        let plain = try await wsPeer("plain", server.url + "/?token=s3cret", "UTC", "via query")
        #expect(plain.events.first?["reply"] != nil, "\(plain.lines) \(plain.stderr)")
        let plainRefused = try await wsPeer("raw", server.url, "UTC", "41")
        #expect(plainRefused.events.first?.int("http_status") == 401)
        #expect(server.process.events.filter { $0.event == "text" }.count == 2)
        await server.stop()
    }

    @Test func healthCheckAnswersPlainHTTP() async throws {
        let server = try await TestServer()
        let result = try await runCommand(
            ["-s", "-i", "http://127.0.0.1:\(server.port)/health"],
            executable: "/usr/bin/curl"
        )
        let text = result.lines.joined(separator: "\n")
        #expect(text.hasPrefix("HTTP/1.1 200"))
        #expect(text.contains(#""ok":true"#))
        let other = try await runCommand(
            ["-s", "-o", "/dev/null", "-w", "%{http_code}\n", "http://127.0.0.1:\(server.port)/nothing-here"],
            executable: "/usr/bin/curl"
        )
        #expect(other.lines.joined() == "426")
        await server.stop()
    }

    @Test func sigtermClosesClientsWithGoingAwayAndExitsZero() async throws {
        let server = try await TestServer()
        let peer = try RunningProcess(
            executable: "/usr/bin/env",
            arguments: ["python3", TestPaths.support("wspeer.py"), "wait", server.url, "UTC"]
        )
        try await peer.waitForEvent { $0["ready"] != nil }
        try await server.process.waitForEvent { $0.event == "connected" }
        #expect(await server.stop() == 0)
        #expect(await peer.waitForExit() == 0)
        #expect(peer.events.last?.int("closed") == 1001, "\(peer.lines)")
        #expect(server.process.events.contains { $0.event == "disconnected" && $0.string("reason") == "shutdown" })
    }

    @Test func serverKeepsServingWhileStdinIsClosed() async throws {
        let server = try await TestServer(stdinNull: true)
        let result = try await xfer("send", "--server", server.url, "still here")
        #expect(result.status == 0)
        await server.stop()
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on (bound, then closed).
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}
