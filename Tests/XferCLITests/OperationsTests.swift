import Foundation
import Testing

/// `GET /metrics` and `GET /` (the browser page) of `xfer serve`, through the real binary.
@Suite(.timeLimit(.minutes(3)))
struct OperationsTests {
    /// Chromium from Debian (`chromium`), if installed.
    static let chromium: String? = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    /// `curl -s -i URL`: the status line, the headers and the body.
    static func get(_ url: String) async throws -> (head: String, body: String) {
        let result = try await runCommand(["-s", "-i", url], executable: "/usr/bin/curl")
        let lines = result.lines.map { $0.trimmingCharacters(in: .newlines) }
        let blank = lines.firstIndex(of: "") ?? lines.endIndex
        return (lines[..<blank].joined(separator: "\n"), lines[blank...].joined(separator: "\n"))
    }

    /// The samples of a Prometheus text exposition, by `name{labels}` as written.
    static func samples(_ body: String) -> [String: Double] {
        var samples: [String: Double] = [:]
        for line in body.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                continue
            }
            samples[line[..<space].trimmingCharacters(in: .whitespaces)] = value
        }
        return samples
    }

    @Test func metricsCountWhatTheEventsShowAndNeedNoToken() async throws {
        let server = try await TestServer(["--token", "s3cret", "--ping-interval", "0.2"])
        let env = ["XFER_TOKEN": "s3cret", "XFER_SERVER": server.url]
        let listener = try RunningProcess(
            executable: TestPaths.binary.path,
            arguments: ["listen", "--name", "ops", "--ping-interval", "0.2"],
            environment: env
        )
        try await server.process.waitForEvent { $0.event == "connected" && $0.string("role") == "listen" }
        try await server.process.waitForEvent { $0.event == "ping" }

        // During the workload: the listener is counted as connected, without a token on the request.
        let during = try await Self.get("http://127.0.0.1:\(server.port)/metrics")
        #expect(during.head.contains("200 OK"), "\(during.head)")
        #expect(during.head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"))
        #expect(Self.samples(during.body)[#"xfer_connections{role="listen"}"#] == 1, "\(during.body)")

        #expect(try await runCommand(["send", "--to", "ops", "a", "b", "c"], environment: env).status == 0)
        #expect(try await runCommand(["send", "x", "y"], environment: env).status == 0)
        #expect(try await runCommand(["send", "--to", "nobody", "z"], environment: env).status == 65)
        _ = try await wsPeer("plain", server.url + "/?token=s3cret", "Mars/Olympus")
        let directory = try TestPaths.temporaryDirectory()
        let text = directory.appendingPathComponent("log.txt")
        try Data(String(repeating: "metrics are counted from events\n", count: 80_000).utf8).write(to: text)
        let random = directory.appendingPathComponent("noise.bin")
        try Data((0..<1_500_000).map { _ in UInt8.random(in: 0...255) }).write(to: random)
        #expect(try await runCommand(["upload", text.path, random.path], environment: env).status == 0)
        listener.signal(SIGTERM)
        #expect(await listener.waitForExit() == 0)
        try await server.process.waitForEvent { $0.event == "disconnected" && $0.int("client") == 1 }
        // The listener's name is remembered: this text is held for it.
        #expect(try await runCommand(["send", "--to", "ops", "late"], environment: env).status == 0)
        try await server.process.waitForEvent { $0.event == "relayed" && $0.int("held") == 1 }

        // Every client is gone: the counts are final. Compare them with the events the server printed.
        let after = try await Self.get("http://127.0.0.1:\(server.port)/metrics")
        let metrics = Self.samples(after.body)
        #expect(metrics.count > 40, "\(after.head) \(after.body)")
        let events = server.process.events
        func sum(_ kinds: Set<String>, _ key: String) -> Double {
            Double(events.filter { kinds.contains($0.event) }.compactMap { $0.int(key) }.reduce(0, +))
        }
        for role in ["send", "listen", "upload", "plain"] {
            let connected = events.filter { $0.event == "connected" && $0.string("role") == role }.count
            #expect(metrics[#"xfer_connections_total{role="\#(role)"}"#] == Double(connected), "\(role)")
            #expect(metrics[#"xfer_connections{role="\#(role)"}"#] == 0, "\(role)")
        }
        let textsIn = events.filter { $0.event == "text" && $0.int("client") != nil }.count
        #expect(textsIn == 7)
        #expect(metrics[#"xfer_texts_total{direction="in"}"#] == Double(textsIn))
        #expect(sum(["relayed", "sent"], "delivered") == 3)
        #expect(metrics[#"xfer_texts_total{direction="relayed"}"#] == sum(["relayed", "sent"], "delivered"))
        #expect(metrics["xfer_texts_held"] == sum(["relayed", "sent"], "held"))
        let saved = events.filter { $0.event == "file_saved" }
        #expect(saved.count == 2)
        #expect(metrics[#"xfer_uploads_total{result="saved"}"#] == Double(saved.count))
        #expect(metrics[#"xfer_uploads_total{result="failed"}"#] == 0)
        #expect(metrics["xfer_upload_duration_seconds_count"] == Double(saved.count))
        #expect(metrics[#"xfer_upload_bytes_total{kind="raw"}"#] == sum(["file_saved"], "bytes"))
        let uploadClients = Set(saved.compactMap { $0.int("client") })
        let wire = uploadClients.map { client in
            events.filter { $0.event == "progress" && $0.int("client") == client }.compactMap { $0.int("wire_bytes") }
                .max() ?? 0
        }.reduce(0, +)
        #expect(metrics[#"xfer_upload_bytes_total{kind="wire"}"#] == Double(wire))
        #expect(wire < 2_640_000 + 1_500_000, "the text file travels compressed")
        #expect(metrics["xfer_upload_blocks_retried_total"] == Double(events.filter { $0.event == "retry" }.count))
        let pings = events.filter { $0.event == "ping" && $0.int("client") != nil }.count
        #expect(pings > 0)
        #expect(metrics["xfer_ping_rtt_seconds_count"] == Double(pings))
        #expect(metrics[#"xfer_ping_rtt_seconds_bucket{le="+Inf"}"#] == Double(pings))
        let badZones = events.filter { $0.event == "error" && $0.string("code") == "bad_timezone" }.count
        #expect(badZones == 1)
        #expect(metrics[#"xfer_errors_total{code="bad_timezone"}"#] == Double(badZones))
        #expect(await server.stop() == 0)
        try await expectValidEvents(server.process.lines)
    }

    @Test func rootServesTheSelfContainedPage() async throws {
        let server = try await TestServer(["--token", "s3cret"])
        let page = try await Self.get("http://127.0.0.1:\(server.port)/?token=s3cret")
        #expect(page.head.contains("200 OK"), "\(page.head)")
        #expect(page.head.contains("Content-Type: text/html; charset=utf-8"))
        #expect(page.body.contains(#"<meta charset="utf-8">"#))
        #expect(page.body.contains("xfer.v1"))
        // Self-contained: nothing is loaded from elsewhere.
        #expect(!page.body.contains("src=\"http"))
        #expect(!page.body.contains("href=\"http"))
        await server.stop()
    }

    @Test(.enabled(if: chromium != nil, "chromium is not installed: `apt-get install chromium` (.ci/test does)"))
    func browserPageSendsReceivesAndUploadsWithResume() async throws {
        let server = try await TestServer(["--token", "s3cret"])
        // A paced link (2 MB/s towards the server) so that the page is reloaded half-way through the upload.
        let (proxy, proxyPort) = try await UploadTests.startProxy(to: server.port, ["--rate", "2000000"])
        let directory = try TestPaths.temporaryDirectory()
        let file = directory.appendingPathComponent("from the browser.bin")
        var bytes = Data(String(repeating: "a compressible line of the browser upload\n", count: 25_000).utf8)
        bytes.append(Data((0..<5_000_000).map { _ in UInt8.random(in: 0...255) }))
        try bytes.write(to: file)
        let screenshot = directory.appendingPathComponent("page.png")
        let result = try await runCommand(
            [
                "python3", TestPaths.support("browser.py"), "--chromium", try #require(Self.chromium),
                "--url", "http://127.0.0.1:\(proxyPort)/?token=s3cret&name=pageops", "--xfer", TestPaths.binary.path,
                "--server", server.url, "--token", "s3cret", "--name", "pageops",
                "--page-text", "hello from the page ✓", "--listen-text", "to the page ✓", "--file", file.path,
                "--reload-at", "2097152", "--screenshot", screenshot.path,
            ],
            executable: "/usr/bin/env",
            timeout: 150
        )
        let report = try #require(result.events.last, "\(result.lines) \(result.stderr)")
        #expect(result.status == 0, "\(report) \(result.stderr)")

        // A text both ways.
        let fromPage = try await server.process.waitForEvent { $0.event == "text" && $0.string("text") != nil }
        #expect(fromPage.string("text") == "hello from the page ✓")
        #expect(
            server.process.events.contains {
                $0.event == "connected" && $0.int("client") == fromPage.int("client") && $0.string("role") == "plain"
            }
        )
        let shown = try #require(report["texts_before_reload"] as? [[String: Any]], "\(report)")
        #expect(shown.contains { $0["text"] as? String == "to the page ✓" && $0["via"] as? String == "pageops" })

        // The upload: cut by the reload, resumed, byte-identical.
        let uploads = try #require(report["uploads"] as? [[String: Any]])
        #expect(uploads.count == 1)
        #expect(uploads.first?["ok"] as? Bool == true, "\(uploads)")
        let saved = try await server.process.waitForEvent { $0.event == "file_saved" }
        #expect(saved.int("bytes") == bytes.count)
        #expect((saved.int("resumed_from") ?? 0) > 0, "\(saved)")
        #expect((uploads.first?["resumedFrom"] as? NSNumber)?.intValue == saved.int("resumed_from"))
        let savedPath = try #require(saved.string("path"))
        #expect(FileManager.default.contents(atPath: savedPath) == bytes)

        // A screenshot that is a non-empty PNG.
        let png = try Data(contentsOf: screenshot)
        #expect(png.count > 2000)
        #expect(png.prefix(8) == Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]))
        proxy.signal(SIGTERM)
        await proxy.waitForExit()
        #expect(await server.stop() == 0)
        try await expectValidEvents(server.process.lines)
    }
}
