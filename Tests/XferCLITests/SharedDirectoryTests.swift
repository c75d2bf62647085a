import Foundation
import Testing

/// Two `xfer serve` processes on one `--dir` (as behind a balancer): one upload is never written by both.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct SharedDirectoryTests {
    /// Every file saved in `directory`, and whether the partial directory is empty.
    static func savedFiles(in directory: URL) throws -> [URL] {
        try FileManager.default.contentsOfDirectory(atPath: directory.path)
            .filter { !$0.hasPrefix(".") }
            .map { directory.appendingPathComponent($0) }
    }

    static func partials(in directory: URL) throws -> [String] {
        let path = directory.appendingPathComponent(".xfer-partial").path
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        return try FileManager.default.contentsOfDirectory(atPath: path)
    }

    /// The same file, uploaded at the same moment through two servers that share the directory (same upload id):
    /// every client succeeds and every saved copy equals the source byte for byte.
    @Test func twoServersOnOneDirectoryNeverWriteOneUploadAtOnce() async throws {
        let source = try TestPaths.temporaryDirectory()
        let file = try UploadTests.makeFile(source, "shared.bin", bytes: 48 << 20)
        let directory = try TestPaths.temporaryDirectory()
        let first = try await TestServer(directory: directory)
        let second = try await TestServer(directory: directory)
        async let one = xfer("upload", "--server", first.url, "--retries", "10", file.path)
        async let two = xfer("upload", "--server", second.url, "--retries", "10", file.path)
        let results = try await [one, two]
        for result in results {
            #expect(result.status == 0, "\(result.lines.suffix(5)) \(result.stderr)")
        }
        let saved = try Self.savedFiles(in: directory)
        #expect((1...2).contains(saved.count), "\(saved)")
        for copy in saved {
            #expect(UploadTests.sameBytes(file, copy), "\(copy.lastPathComponent) differs from the source")
        }
        #expect(try Self.partials(in: directory).isEmpty)
        await first.stop()
        await second.stop()
        try await expectValidEvents(results.flatMap(\.lines) + first.process.lines + second.process.lines)
    }

    /// While one server writes an upload (slowly, through a paced link), the other refuses it with `busy`; its
    /// client retries until the first has saved the file, then uploads its own copy, and both copies are right.
    @Test func aSecondServerRefusesABusyUploadAndItsClientRetries() async throws {
        let source = try TestPaths.temporaryDirectory()
        let file = try UploadTests.makeFile(source, "busy.bin", bytes: 48 << 20)
        let directory = try TestPaths.temporaryDirectory()
        let first = try await TestServer(directory: directory)
        let second = try await TestServer(directory: directory)
        let (proxy, port) = try await UploadTests.startProxy(to: first.port, ["--rate", "16000000"])
        let slow = try RunningProcess(
            executable: TestPaths.binary.path,
            arguments: ["upload", "--server", "127.0.0.1:\(port)", file.path]
        )
        try await first.process.waitForEvent(timeout: 30) { $0.event == "progress" && ($0.int("bytes") ?? 0) > 0 }
        let other = try await xfer("upload", "--server", second.url, "--retries", "10", file.path)
        #expect(await slow.waitForExit(timeout: 60) == 0, "\(slow.stderr)")
        #expect(other.status == 0, "\(other.lines.suffix(5)) \(other.stderr)")
        #expect(other.events.contains { $0.event == "reconnecting" })
        #expect(second.process.events.contains { $0.event == "error" && $0.string("code") == "busy" })
        let saved = try Self.savedFiles(in: directory)
        #expect(saved.count == 2, "\(saved)")
        for copy in saved {
            #expect(UploadTests.sameBytes(file, copy), "\(copy.lastPathComponent) differs from the source")
        }
        #expect(try Self.partials(in: directory).isEmpty)
        proxy.signal(SIGKILL)
        await first.stop()
        await second.stop()
        try await expectValidEvents(other.lines + slow.lines + second.process.lines)
    }
}
