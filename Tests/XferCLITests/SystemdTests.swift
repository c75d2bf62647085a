import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `serve` under systemd: readiness on `NOTIFY_SOCKET`, and the unit in examples/ checked by systemd itself.
@Suite(.timeLimit(.minutes(2)))
struct SystemdTests {
    /// A unix datagram socket standing in for systemd's notification socket.
    final class NotifySocket {
        let fd: Int32
        /// What goes in `NOTIFY_SOCKET`: a path, or `@name` for the abstract namespace.
        let name: String

        init(abstract: Bool) throws {
            self.fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            try #require(self.fd >= 0)
            let unique = UUID().uuidString.prefix(8)
            self.name =
                abstract
                ? "@xfer-test-\(unique)"
                : FileManager.default.temporaryDirectory.appendingPathComponent("xfer-notify-\(unique)").path
            var pathBytes = Array(self.name.utf8)
            if abstract { pathBytes[0] = 0 }
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: pathBytes) }
            let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + pathBytes.count)
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(self.fd, $0, length) }
            }
            try #require(bound == 0, "bind \(self.name): errno \(errno)")
        }

        deinit {
            close(self.fd)
            if !self.name.hasPrefix("@") { unlink(self.name) }
        }

        /// The next datagram, or nil after `timeout` seconds.
        func receive(timeout: Double) -> String? {
            var poller = pollfd(fd: self.fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, Int32(timeout * 1000)) > 0 else { return nil }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = buffer.withUnsafeMutableBytes { recv(self.fd, $0.baseAddress, $0.count, 0) }
            return count > 0 ? String(decoding: buffer[0..<count], as: UTF8.self) : nil
        }
    }

    @Test(arguments: [false, true])
    func serveNotifiesReadyAfterListeningAndStoppingOnShutdown(abstract: Bool) async throws {
        let notify = try NotifySocket(abstract: abstract)
        let directory = try TestPaths.temporaryDirectory()
        let server = try RunningProcess(
            executable: TestPaths.binary.path,
            arguments: ["serve", "--port", "0", "--dir", directory.path],
            environment: ["NOTIFY_SOCKET": notify.name]
        )
        let ready = try #require(notify.receive(timeout: 30), "no READY=1 on \(notify.name): \(server.stderr)")
        let lines = ready.split(separator: "\n").map(String.init)
        #expect(lines.contains("READY=1"))
        #expect(lines.contains("MAINPID=\(server.process.processIdentifier)"))
        // The status names the port the listening event reports: READY=1 was sent once the port was bound.
        let listening = try await server.waitForEvent { $0.event == "listening" }
        let port = try #require(listening.int("port"))
        #expect(lines.contains("STATUS=listening on 127.0.0.1:\(port)"), "\(lines)")

        let sent = try await xfer("send", "--server", "127.0.0.1:\(port)", "ready means ready")
        #expect(sent.status == 0)

        server.signal(SIGTERM)
        let stopping = try #require(notify.receive(timeout: 10), "no STOPPING=1")
        #expect(stopping.split(separator: "\n").contains("STOPPING=1"))
        #expect(await server.waitForExit() == 0)
    }

    @Test func serveWithoutNotifySocketSendsNothingAndRuns() async throws {
        let server = try await TestServer()
        let sent = try await xfer("send", "--server", server.url, "no systemd")
        #expect(sent.status == 0)
        #expect(await server.stop() == 0)
    }

    static let systemdAnalyze = "/usr/bin/systemd-analyze"

    @Test(
        .enabled(
            if: FileManager.default.isExecutableFile(atPath: SystemdTests.systemdAnalyze),
            "systemd-analyze is not installed: examples/xfer.service is not checked"
        )
    )
    func exampleUnitPassesSystemdAnalyzeVerifyAndSecurity() async throws {
        let unit = try String(
            contentsOf: TestPaths.root.appendingPathComponent("examples/xfer.service"),
            encoding: .utf8
        )
        #expect(unit.contains("\nType=notify\n"))
        #expect(unit.contains("\nStateDirectory=xfer\n"))
        #expect(unit.contains("--dir %S/xfer"))
        // verify checks that ExecStart's binary exists: point it at the binary under test.
        let directory = try TestPaths.temporaryDirectory()
        let file = directory.appendingPathComponent("xfer.service")
        try unit.replacingOccurrences(of: "/usr/local/bin/xfer", with: TestPaths.binary.path)
            .write(to: file, atomically: true, encoding: .utf8)
        // --man=no: verify would otherwise look up Documentation=man:xfer(1), which need not be installed here.
        let verify = try await runCommand(["verify", "--man=no", file.path], executable: Self.systemdAnalyze)
        #expect(verify.status == 0, "\(verify.stderr)")
        // Unknown or misspelt settings are only warnings: the unit is clean only if there are none.
        #expect(verify.stderr.isEmpty, "\(verify.stderr)")
        // systemd's own exposure score (0 safest, 10 unsafe; "OK" below 2): the hardening is in effect.
        let security = try await runCommand(
            ["security", "--offline=yes", "--threshold=20", file.path],
            executable: Self.systemdAnalyze
        )
        #expect(security.status == 0, "\(security.lines.suffix(3).joined(separator: "\n"))")
        try? FileManager.default.removeItem(at: directory)
    }
}
