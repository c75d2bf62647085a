import Foundation
import Testing

/// `wss://` through the real binary: `serve --tls-cert/--tls-key`, clients that verify by default.
@Suite(.timeLimit(.minutes(2)))
struct TLSTests {
    /// A self-signed certificate and its key, made with openssl for one test.
    struct Certificate {
        let directory: URL
        var cert: String { self.directory.appendingPathComponent("cert.pem").path }
        var key: String { self.directory.appendingPathComponent("key.pem").path }

        /// A certificate whose subjectAltName is `names` (e.g. `DNS:localhost,IP:127.0.0.1`).
        init(names: String) async throws {
            self.directory = try TestPaths.temporaryDirectory()
            let result = try await runCommand(
                [
                    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", self.directory.appendingPathComponent("key.pem").path,
                    "-out", self.directory.appendingPathComponent("cert.pem").path,
                    "-days", "2", "-subj", "/CN=xfer test", "-addext", "subjectAltName=\(names)",
                ],
                executable: "/usr/bin/openssl"
            )
            try #require(result.status == 0, "openssl failed: \(result.stderr)")
        }
    }

    @Test func clientsVerifyTheServerCertificateAndTalkOverTLS() async throws {
        let certificate = try await Certificate(names: "DNS:localhost,IP:127.0.0.1")
        let server = try await TestServer(["--tls-cert", certificate.cert, "--tls-key", certificate.key])
        let listening = try #require(server.process.events.first { $0.event == "listening" })
        #expect(listening.bool("tls") == true)
        let byIP = "wss://127.0.0.1:\(server.port)"
        let byName = "wss://localhost:\(server.port)"

        let sent = try await xfer("send", "--server", byIP, "--tls-ca", certificate.cert, "över TLS")
        #expect(sent.status == 0, "\(sent.stderr)")
        #expect(sent.events.first { $0.event == "status" }?.bool("ok") == true)
        #expect(sent.events.first { $0.event == "connected" }?.string("server")?.hasPrefix("wss://") == true)
        let text = try await server.process.waitForEvent { $0.event == "text" }
        #expect(text.string("text") == "över TLS")

        // The host name is checked too (SNI and a DNS subjectAltName), and XFER_TLS_CA works like --tls-ca.
        let named = try await xfer(
            "send",
            "--server",
            byName,
            "by name",
            environment: ["XFER_TLS_CA": certificate.cert]
        )
        #expect(named.status == 0, "\(named.stderr)")

        // Verification is on by default: a self-signed certificate is refused with 77, unless --insecure.
        let untrusted = try await xfer("send", "--server", byIP, "x")
        #expect(untrusted.status == 77, "\(untrusted.stderr)")
        #expect(untrusted.events.last?.string("code") == "tls_verification_failed")
        #expect(untrusted.stderr.contains("--tls-ca"))
        let insecure = try await xfer("send", "--server", byIP, "--insecure", "unverified")
        #expect(insecure.status == 0, "\(insecure.stderr)")

        // Uploads travel inside TLS and arrive byte for byte.
        let source = try TestPaths.temporaryDirectory().appendingPathComponent("payload.bin")
        let payload = Data((0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) })
        try payload.write(to: source)
        let upload = try await xfer("upload", "--server", byIP, "--tls-ca", certificate.cert, source.path)
        #expect(upload.status == 0, "\(upload.stderr)")
        let saved = try Data(contentsOf: server.directory.appendingPathComponent("payload.bin"))
        #expect(saved == payload)

        // A plain WebSocket client (Python websockets with its own SSL context) and curl's health check.
        let plain = try await runCommand(
            ["python3", TestPaths.support("wspeer.py"), "plain", byIP, "UTC", "from python"],
            executable: "/usr/bin/env",
            environment: ["WSPEER_CA": certificate.cert]
        )
        #expect(plain.events.first?["reply"] != nil, "\(plain.lines) \(plain.stderr)")
        let health = try await runCommand(
            ["-s", "--cacert", certificate.cert, "https://127.0.0.1:\(server.port)/health"],
            executable: "/usr/bin/curl"
        )
        #expect(health.lines.joined().contains(#""ok":true"#), "\(health.lines) \(health.stderr)")

        // A ws:// client at a TLS port fails cleanly, and the server keeps serving.
        let plainText = try await xfer("send", "--server", server.url, "x")
        #expect(plainText.status != 0)
        #expect(plainText.events.last?.event == "error")
        let after = try await xfer("send", "--server", byIP, "--tls-ca", certificate.cert, "still here")
        #expect(after.status == 0, "\(after.stderr)")

        #expect(await server.stop() == 0)
        try await expectValidEvents(
            sent.lines + named.lines + untrusted.lines + upload.lines + plainText.lines + server.process.lines
        )
    }

    @Test func aCertificateForAnotherHostIsRefused() async throws {
        let certificate = try await Certificate(names: "DNS:elsewhere.example")
        let server = try await TestServer(["--tls-cert", certificate.cert, "--tls-key", certificate.key])
        let result = try await xfer(
            "send",
            "--server",
            "wss://127.0.0.1:\(server.port)",
            "--tls-ca",
            certificate.cert,
            "x"
        )
        #expect(result.status == 77, "\(result.stderr)")
        #expect(result.events.last?.string("code") == "tls_verification_failed")
        #expect(server.process.events.contains { $0.event == "text" } == false)
        await server.stop()
    }

    @Test func wssToAPlainServerAndBadServerFilesFailClearly() async throws {
        let server = try await TestServer()
        let result = try await xfer("send", "--server", "wss://127.0.0.1:\(server.port)", "--insecure", "x")
        #expect(result.status == 69, "\(result.stderr)")
        #expect(result.events.last?.string("code") == "tls_failed")
        await server.stop()

        let missing = try await xfer("serve", "--port", "0", "--tls-cert", "/nonexistent.pem", "--tls-key", "/x.pem")
        #expect(missing.status == 66, "\(missing.stderr)")
        #expect(missing.events.last?.string("code") == "input_unreadable")
        #expect(missing.stderr.contains("--tls-cert"))
        let half = try await xfer("serve", "--port", "0", "--tls-cert", "/nonexistent.pem")
        #expect(half.status == 64)
        let both = try await xfer("send", "--tls-ca", "/x.pem", "--insecure", "x")
        #expect(both.status == 64)
        try await expectValidEvents(result.lines + missing.lines + half.lines + both.lines)
    }
}
