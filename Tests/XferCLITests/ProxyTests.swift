import Foundation
import Testing

/// Clients through an HTTP CONNECT proxy (Tests/Support/connectproxy.py on loopback): `--proxy` and the
/// `*_PROXY` variables, `ws://` and `wss://`, `NO_PROXY`, credentials, and proxies that refuse or fail.
@Suite(.timeLimit(.minutes(2)))
struct ProxyTests {
    /// A CONNECT proxy started for one test; its stdout says which tunnels it was asked for.
    final class TestProxy: @unchecked Sendable {
        let process: RunningProcess
        let port: Int

        init(_ arguments: [String] = []) async throws {
            self.process = try RunningProcess(
                executable: "/usr/bin/env",
                arguments: ["python3", TestPaths.support("connectproxy.py")] + arguments
            )
            let ready = try await self.process.waitForEvent { $0.int("port") != nil }
            self.port = try #require(ready.int("port"))
        }

        var url: String { "http://127.0.0.1:\(self.port)" }
        /// The `host:port` of every CONNECT so far.
        var tunnels: [String] { self.process.events.compactMap { $0.string("connect") } }

        /// Kills the proxy: it has nothing to clean up, and after SIGTERM it outlived the 20 s wait here.
        func stop() async {
            self.process.signal(SIGKILL)
            await self.process.waitForExit()
        }
    }

    @Test func sendListenAndUploadReachAWsServerThroughProxyOption() async throws {
        let server = try await TestServer()
        let proxy = try await TestProxy()
        let target = "127.0.0.1:\(server.port)"
        let listener = try RunningProcess(
            executable: TestPaths.binary.path,
            arguments: ["listen", "--server", server.url, "--proxy", proxy.url, "--name", "ops"]
        )
        try await listener.waitForEvent { $0.event == "connected" }
        let sent = try await xfer("send", "--server", server.url, "--proxy", proxy.url, "--to", "ops", "via proxy")
        #expect(sent.status == 0, "\(sent.stderr)")
        let text = try await listener.waitForEvent { $0.event == "text" }
        #expect(text.string("text") == "via proxy")

        let directory = try TestPaths.temporaryDirectory()
        let file = directory.appendingPathComponent("data.bin")
        let bytes = Data((0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        try bytes.write(to: file)
        let uploaded = try await runCommand(
            ["upload", "--server", server.url, file.path],
            environment: ["http_proxy": proxy.url]
        )
        #expect(uploaded.status == 0, "\(uploaded.stderr)")
        #expect(try Data(contentsOf: server.directory.appendingPathComponent("data.bin")) == bytes)

        // Every client asked the proxy for the server: listen, send, upload.
        #expect(proxy.tunnels.filter { $0 == target }.count >= 3, "\(proxy.tunnels)")
        listener.signal(SIGTERM)
        await listener.waitForExit()
        try await expectValidEvents(sent.lines + uploaded.lines + listener.lines)
        await proxy.stop()
        await server.stop()
    }

    @Test func wssRunsTLSInsideTheTunnelWithTheServerName() async throws {
        let certificate = try await TLSTests.Certificate(names: "DNS:localhost")
        let server = try await TestServer(["--tls-cert", certificate.cert, "--tls-key", certificate.key])
        let proxy = try await TestProxy()
        // https_proxy for wss://; the certificate is checked against "localhost", the name in the URL.
        let sent = try await xfer(
            "send",
            "--server",
            "wss://localhost:\(server.port)",
            "--tls-ca",
            certificate.cert,
            "tls in a tunnel",
            environment: ["https_proxy": proxy.url, "http_proxy": "http://127.0.0.1:1"]
        )
        #expect(sent.status == 0, "\(sent.stderr)")
        #expect(proxy.tunnels == ["localhost:\(server.port)"])
        let text = try await server.process.waitForEvent { $0.event == "text" }
        #expect(text.string("text") == "tls in a tunnel")
        try await expectValidEvents(sent.lines)
        await proxy.stop()
        await server.stop()
    }

    @Test func noProxyBypassesTheEnvironmentAndTheOption() async throws {
        let server = try await TestServer()
        let proxy = try await TestProxy()
        let fromEnvironment = try await xfer(
            "send",
            "--server",
            server.url,
            "direct",
            environment: ["HTTP_PROXY": proxy.url, "NO_PROXY": "localhost,127.0.0.0/8"]
        )
        #expect(fromEnvironment.status == 0, "\(fromEnvironment.stderr)")
        let fromOption = try await xfer(
            "send",
            "--server",
            server.url,
            "--proxy",
            proxy.url,
            "direct too",
            environment: ["no_proxy": "127.0.0.1:\(server.port)"]
        )
        #expect(fromOption.status == 0, "\(fromOption.stderr)")
        // A NO_PROXY entry for another port does not bypass.
        let otherPort = try await xfer(
            "send",
            "--server",
            server.url,
            "--proxy",
            proxy.url,
            "proxied",
            environment: ["no_proxy": "127.0.0.1:\(server.port == 1 ? 2 : 1)"]
        )
        #expect(otherPort.status == 0, "\(otherPort.stderr)")
        #expect(proxy.tunnels == ["127.0.0.1:\(server.port)"])
        await proxy.stop()
        await server.stop()
    }

    @Test func credentialsInTheURLAreSentAsProxyAuthorization() async throws {
        let server = try await TestServer()
        let proxy = try await TestProxy(["--user", "alice:s3cr:et"])
        let without = try await xfer("send", "--server", server.url, "--proxy", proxy.url, "x")
        #expect(without.status == 69)
        let error = try #require(without.events.last { $0.event == "error" })
        #expect(error.string("code") == "proxy_failed")
        #expect(error.string("message")?.contains("\(proxy.url) refused CONNECT") == true, "\(error)")
        #expect(error.string("message")?.contains("407 Proxy Authentication Required") == true, "\(error)")
        #expect(without.stderr.contains("407"))

        let authenticatedURL = "http://alice:s3cr%3Aet@127.0.0.1:\(proxy.port)"
        let with = try await xfer("send", "--server", server.url, "--proxy", authenticatedURL, "authenticated")
        #expect(with.status == 0, "\(with.stderr)")
        let requests = proxy.process.events.filter { $0.string("connect") != nil }
        #expect(requests.last?.string("authorization") == "Basic YWxpY2U6czNjcjpldA==")
        #expect(!with.stderr.contains("s3cr"))
        try await expectValidEvents(without.lines + with.lines)
        await proxy.stop()
        await server.stop()
    }

    @Test func refusingHangingUpAndUnreachableProxiesExit69WithProxyFailed() async throws {
        let server = try await TestServer()
        let refusing = try await TestProxy(["--refuse", "502"])
        let hangingUp = try await TestProxy(["--hang-up"])
        let cases: [(proxy: String, says: String)] = [
            (refusing.url, "HTTP/1.1 502 Refused by test proxy"),
            (hangingUp.url, "closed the connection before answering CONNECT"),
            ("http://127.0.0.1:1", "cannot connect to proxy http://127.0.0.1:1"),
        ]
        for (proxy, says) in cases {
            let result = try await xfer("send", "--server", server.url, "--proxy", proxy, "x")
            #expect(result.status == 69, "\(proxy): \(result.stderr)")
            let error = try #require(result.events.last { $0.event == "error" })
            #expect(error.string("code") == "proxy_failed", "\(proxy)")
            #expect(error.string("message")?.contains(says) == true, "\(proxy): \(error)")
            try await expectValidEvents(result.lines)
        }
        // A listener does not retry a proxy that refuses: it exits with the same error.
        let listen = try await xfer("listen", "--server", server.url, "--proxy", refusing.url, "--name", "ops")
        #expect(listen.status == 69, "\(listen.stderr)")
        #expect(listen.events.last { $0.event == "error" }?.string("code") == "proxy_failed")
        // A proxy URL that cannot work is a usage error, before any connection.
        let bad = try await xfer("send", "--server", server.url, "x", environment: ["http_proxy": "socks5://p:1"])
        #expect(bad.status == 64)
        #expect(bad.stderr.contains("http_proxy"))
        await refusing.stop()
        await hangingUp.stop()
        await server.stop()
    }
}
