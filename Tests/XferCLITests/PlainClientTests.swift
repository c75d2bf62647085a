import Foundation
import Testing

/// Ordinary WebSocket clients (Python `websockets` and a raw socket) against `xfer serve`.
@Suite(.timeLimit(.minutes(2)))
struct PlainClientTests {
    @Test func pythonWebsocketsClientGetsAStatusPerMessage() async throws {
        let server = try await TestServer()
        let result = try await wsPeer("plain", server.url, "Asia/Kolkata", "hi", "ünïcødé ✓", "")
        #expect(result.status == 0, "\(result.stderr)")
        let replies = result.events.compactMap { $0["reply"] as? [String: Any] }
        #expect(replies.count == 3)
        #expect(replies.map { ($0["ok"] as? Bool) == true }.allSatisfy { $0 })
        #expect(replies.map { ($0["id"] as? NSNumber)?.intValue } == [1, 2, 3])
        let texts = try await server.process.waitForEvents(count: 3) { $0.event == "text" }
        #expect(texts.map { $0.string("text") } == ["hi", "ünïcødé ✓", ""])
        let connected = try #require(server.process.events.first { $0.event == "connected" })
        #expect(connected.string("timezone") == "Asia/Kolkata")
        #expect(connected.string("protocol") == "plain")
        await server.stop()
        try await expectValidEvents(server.process.lines)
    }

    @Test func offsetTimezonesAreAccepted() async throws {
        let server = try await TestServer()
        for zone in ["+05:30", "-08:00", "UTC"] {
            let result = try await wsPeer("plain", server.url, zone, "x")
            #expect(result.events.first?["reply"] != nil, "\(zone): \(result.lines)")
        }
        await server.stop()
    }

    @Test func badTimezoneGetsAnErrorAndClose1008() async throws {
        let server = try await TestServer()
        let result = try await wsPeer("plain", server.url, "Mars/Olympus")
        let reply = try #require(result.events.first?["reply"] as? [String: Any], "\(result.lines) \(result.stderr)")
        #expect(reply["ok"] as? Bool == false)
        #expect(reply["code"] as? String == "bad_timezone")
        #expect(result.events.last?.int("closed") == 1008)
        try await server.process.waitForEvent { $0.event == "error" && $0.string("code") == "bad_timezone" }
        #expect(!server.process.events.contains { $0.event == "connected" })
        await server.stop()
        try await expectValidEvents(server.process.lines)
    }

    @Test func invalidUTF8ClosesWith1007AndOthersAreServed() async throws {
        let server = try await TestServer()
        let result = try await wsPeer("raw", server.url, "UTC", "c328")
        #expect(result.events.last?.int("closed") == 1007, "\(result.lines) \(result.stderr)")
        let after = try await xfer("send", "--server", server.url, "after")
        #expect(after.status == 0)
        await server.stop()
    }

    @Test func oversizedMessageClosesWith1009AndOthersAreServed() async throws {
        let server = try await TestServer(["--max-text-bytes", "1000"])
        let result = try await wsPeer("plain", server.url, "UTC", "small", String(repeating: "y", count: 5000))
        #expect(result.events.first?["reply"] != nil)
        #expect(result.events.last?.int("closed") == 1009, "\(result.lines) \(result.stderr)")
        let after = try await xfer("send", "--server", server.url, "after")
        #expect(after.status == 0)
        let tooBig = try await xfer("send", "--server", server.url, String(repeating: "z", count: 2000), "fits")
        #expect(tooBig.status == 65)
        #expect(tooBig.events.contains { $0.event == "error" && $0.string("code") == "message_too_large" })
        #expect(tooBig.events.filter { $0.event == "status" }.count == 1)
        await server.stop()
    }
}
