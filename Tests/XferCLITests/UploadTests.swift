import Foundation
import Testing

/// `xfer upload` against `xfer serve` through the real binaries: bytes, names, compression, faults, resume.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct UploadTests {
    /// Writes `count` bytes of random data (or compressible text) to a new file and returns its URL.
    static func makeFile(_ directory: URL, _ name: String, bytes count: Int, text: Bool = false) throws -> URL {
        let url = directory.appendingPathComponent(name)
        var data = Data(capacity: count)
        if text {
            var line = 0
            while data.count < count {
                line += 1
                data.append(contentsOf: "\(line): the quick brown fox jumps over the lazy dog, again and again\n".utf8)
            }
            data = data.prefix(count)
        } else if count > 0 {
            let random = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/dev/urandom"))
            data = try random.read(upToCount: count) ?? Data()
            try random.close()
        }
        try data.write(to: url)
        return url
    }

    /// Starts Tests/Support/faultproxy.py in front of `port` and returns it with its own port.
    static func startProxy(to port: Int, _ arguments: [String] = []) async throws -> (RunningProcess, Int) {
        let proxy = try RunningProcess(
            executable: "/usr/bin/env",
            arguments: ["python3", TestPaths.support("faultproxy.py"), String(port)] + arguments
        )
        let first = try await proxy.waitForEvent { $0["port"] != nil }
        return (proxy, try #require(first.int("port")))
    }

    static func sameBytes(_ a: URL, _ b: URL) -> Bool {
        FileManager.default.contents(atPath: a.path) == FileManager.default.contents(atPath: b.path)
    }

    @Test func filesArriveByteForByteWithEventsOnBothSides() async throws {
        let source = try TestPaths.temporaryDirectory()
        let random = try Self.makeFile(source, "random.bin", bytes: 3_000_000)
        let text = try Self.makeFile(source, "notes with spaces.txt", bytes: 2_500_000, text: true)
        let empty = try Self.makeFile(source, "empty.dat", bytes: 0)
        let server = try await TestServer()
        let result = try await runCommand(["upload", "--server", server.url, random.path, text.path, empty.path])
        #expect(result.status == 0, "\(result.stderr)")
        for file in [random, text, empty] {
            let saved = server.directory.appendingPathComponent(file.lastPathComponent)
            #expect(Self.sameBytes(file, saved), "\(file.lastPathComponent) differs")
        }
        let statuses = result.events.filter { $0.event == "status" }
        #expect(statuses.count == 3)
        #expect(statuses.allSatisfy { $0.bool("ok") == true && $0.int("resumed_from") == 0 })
        #expect(statuses.map { $0.string("path") } == ["random.bin", "notes with spaces.txt", "empty.dat"])
        #expect(statuses.map { $0.int("bytes") } == [3_000_000, 2_500_000, 0])
        #expect(statuses.allSatisfy { ($0.string("sha256") ?? "").count == 64 })
        let saved = try await server.process.waitForEvents(count: 3) { $0.event == "file_saved" }
        #expect(saved.map { $0.string("sha256") } == statuses.map { $0.string("sha256") })
        #expect(saved.allSatisfy { $0.string("path")?.hasPrefix(server.directory.path + "/") == true })
        #expect(result.events.contains { $0.event == "progress" && $0.int("total") == 3_000_000 })
        // No partial data is left behind once everything is saved.
        let partials = try FileManager.default.contentsOfDirectory(
            atPath: server.directory.appendingPathComponent(".xfer-partial").path
        )
        #expect(partials.isEmpty)
        await server.stop()
        try await expectValidEvents(result.lines + server.process.lines)
    }

    /// Drop-behind: the server sends each block to the disk and drops what is more than 16 MiB behind from the page
    /// cache, so a saved 96 MiB file has at most 32 MiB of it cached (all of it would be without drop-behind).
    @Test func aLargeUploadLeavesLittleOfItInThePageCache() async throws {
        let source = try TestPaths.temporaryDirectory()
        let file = try Self.makeFile(source, "large.bin", bytes: 96 << 20)
        let server = try await TestServer()
        let result = try await runCommand(["upload", "--server", server.url, file.path])
        #expect(result.status == 0, "\(result.stderr)")
        let saved = server.directory.appendingPathComponent("large.bin")
        let cached = try await runCommand(
            ["--bytes", "--noheadings", "--output", "RES", saved.path],
            executable: "/usr/bin/fincore"
        )
        #expect(cached.status == 0, "\(cached.stderr)")
        let resident = try #require(cached.lines.first.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) })
        #expect(resident <= 32 << 20, "\(resident) bytes of the saved file are in the page cache")
        #expect(Self.sameBytes(file, saved))
        await server.stop()
    }

    @Test func stdinStreamIsSavedUnderItsName() async throws {
        let server = try await TestServer()
        let text = (1...50_000).map { "stream line \($0)" }.joined(separator: "\n")
        let result = try await runCommand(["upload", "--server", server.url, "-", "--name", "live.log"], stdin: text)
        #expect(result.status == 0, "\(result.stderr)")
        let saved = try String(contentsOf: server.directory.appendingPathComponent("live.log"), encoding: .utf8)
        #expect(saved == text)
        let status = try #require(result.events.first { $0.event == "status" })
        #expect(status.string("file") == "-")
        #expect(status.int("bytes") == text.utf8.count)
        await server.stop()
    }

    @Test func existingNamesAreNeverOverwritten() async throws {
        let source = try TestPaths.temporaryDirectory()
        let first = try Self.makeFile(source, "report.tar.gz", bytes: 10_000)
        let server = try await TestServer()
        #expect(try await xfer("upload", "--server", server.url, first.path).status == 0)
        let second = try Self.makeFile(source, "other.bin", bytes: 20_000)
        let result = try await xfer("upload", "--server", server.url, second.path, "--name", "report.tar.gz")
        #expect(result.status == 0)
        #expect(result.events.first { $0.event == "status" }?.string("path") == "report (1).tar.gz")
        #expect(Self.sameBytes(first, server.directory.appendingPathComponent("report.tar.gz")))
        #expect(Self.sameBytes(second, server.directory.appendingPathComponent("report (1).tar.gz")))
        await server.stop()
    }

    @Test func hostileNamesStayInsideTheDirectory() async throws {
        let source = try TestPaths.temporaryDirectory()
        let file = try Self.makeFile(source, "payload.bin", bytes: 5_000)
        let outside = try TestPaths.temporaryDirectory()
        let victim = outside.appendingPathComponent("victim.txt")
        try Data("precious".utf8).write(to: victim)
        let server = try await TestServer()
        // A symlink inside the directory that points outside it.
        try FileManager.default.createSymbolicLink(
            atPath: server.directory.appendingPathComponent("victim.txt").path,
            withDestinationPath: victim.path
        )
        let names = [
            "../../escape.txt", "/etc/passwd", "..\\..\\windows.txt", "ctl\u{1}char\u{7f}.txt", ".hidden",
            String(repeating: "long", count: 100) + ".txt", "victim.txt",
        ]
        for name in names {
            let result = try await xfer("upload", "--server", server.url, file.path, "--name", name)
            #expect(result.status == 0, "\(name): \(result.stderr)")
            let path = try #require(result.events.first { $0.event == "status" }?.string("path"))
            #expect(!path.contains("/"), "\(name) saved as \(path)")
            #expect(Self.sameBytes(file, server.directory.appendingPathComponent(path)))
        }
        #expect(try String(contentsOf: victim, encoding: .utf8) == "precious")
        #expect(
            !FileManager.default.fileExists(
                atPath: server.directory.deletingLastPathComponent().appendingPathComponent("escape.txt").path
            )
        )
        let dotsOnly = try await xfer("upload", "--server", server.url, file.path, "--name", "..")
        #expect(dotsOnly.status == 65)
        #expect(dotsOnly.events.contains { $0.string("code") == "bad_name" })
        await server.stop()
    }

    @Test func compressibleTextCrossesInFewerBytesAndRandomDataBarelyGrows() async throws {
        let source = try TestPaths.temporaryDirectory()
        let text = try Self.makeFile(source, "text.txt", bytes: 4_000_000, text: true)
        let random = try Self.makeFile(source, "random.bin", bytes: 4_000_000)
        let server = try await TestServer()
        let (proxy, port) = try await Self.startProxy(to: server.port)
        for file in [text, random] {
            let result = try await xfer("upload", "--server", "127.0.0.1:\(port)", file.path)
            #expect(result.status == 0)
        }
        let connections = try await proxy.waitForEvents(count: 2) { $0["conn"] != nil }
        let textBytes = Double(connections[0].int("up") ?? 0)
        let randomBytes = Double(connections[1].int("up") ?? 0)
        #expect(textBytes < 0.35 * 4_000_000, "text crossed in \(textBytes) bytes")
        #expect(randomBytes < 1.02 * 4_000_000, "random data crossed in \(randomBytes) bytes")
        #expect(randomBytes >= 4_000_000)
        proxy.signal(SIGKILL)
        await server.stop()
    }

    /// A text corpus of this repository's own sources and documentation, repeated up to `count` bytes: varied,
    /// real text (code, prose, man page markup), as a log or dump would be.
    static func makeCorpus(_ directory: URL, _ name: String, bytes count: Int) throws -> URL {
        var base = Data()
        for folder in ["Sources", "man", "schema"] {
            let root = TestPaths.root.appendingPathComponent(folder)
            let files = FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil)?
                .compactMap { $0 as? URL }
                .filter { !$0.hasDirectoryPath }
                .sorted { $0.path < $1.path }
            for file in files ?? [] { base.append(try Data(contentsOf: file)) }
        }
        base.append(try Data(contentsOf: TestPaths.root.appendingPathComponent("README.md")))
        try #require(base.count > 100_000, "only \(base.count) bytes of text found under \(TestPaths.root.path)")
        var data = Data(capacity: count)
        while data.count < count { data.append(base) }
        let url = directory.appendingPathComponent(name)
        try data.prefix(count).write(to: url)
        return url
    }

    /// Blocks are compressed independently, so `--threads` changes where the work runs, not what travels: with
    /// one and with two compression threads the saved files are identical to the source and the bytes on the wire
    /// the same.
    @Test func oneAndTwoCompressionThreadsSaveIdenticalFiles() async throws {
        let source = try TestPaths.temporaryDirectory()
        let count = 6_500_000
        let corpus = try Self.makeCorpus(source, "corpus.txt", bytes: count)
        var saved: [Data] = []
        var up: [Int] = []
        for threads in ["1", "2"] {
            let server = try await TestServer()
            let (proxy, port) = try await Self.startProxy(to: server.port)
            let result = try await xfer("upload", "--server", "127.0.0.1:\(port)", "--threads", threads, corpus.path)
            #expect(result.status == 0, "--threads \(threads): \(result.stderr)")
            #expect(
                result.events.contains { $0.event == "status" && $0.bool("ok") == true && $0.int("bytes") == count }
            )
            let connection = try await proxy.waitForEvent { $0["conn"] != nil }
            up.append(connection.int("up") ?? 0)
            saved.append(try Data(contentsOf: server.directory.appendingPathComponent("corpus.txt")))
            proxy.signal(SIGKILL)
            await server.stop()
        }
        let original = try Data(contentsOf: corpus)
        #expect(saved[0] == original, "--threads 1 saved different bytes")
        #expect(saved[1] == original, "--threads 2 saved different bytes")
        #expect(up[0] > 0 && up[0] < count / 2, "text crossed in \(up[0]) bytes")
        #expect(abs(up[0] - up[1]) < 256, "--threads 1 sent \(up[0]) bytes, --threads 2 \(up[1])")
    }

    @Test func aCutConnectionReconnectsAndResumes() async throws {
        let source = try TestPaths.temporaryDirectory()
        let file = try Self.makeFile(source, "big.bin", bytes: 12_000_000)
        let server = try await TestServer()
        let (proxy, port) = try await Self.startProxy(to: server.port, ["--cut-after", "5000000"])
        let result = try await xfer("upload", "--server", "127.0.0.1:\(port)", file.path)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.events.contains { $0.event == "reconnecting" })
        #expect(Self.sameBytes(file, server.directory.appendingPathComponent("big.bin")))
        let connections = try await proxy.waitForEvents(count: 2) { $0["conn"] != nil }
        // Only the rest crossed the second time (plus at most the window of unacknowledged blocks).
        let secondBytes = connections[1].int("up") ?? .max
        let limit = 12_000_000 - 5_000_000 + 17 * 1_048_576
        #expect(secondBytes < limit)
        proxy.signal(SIGKILL)
        await server.stop()
    }

    @Test(arguments: [false, true])
    func aReconnectReportsTheResumeOffsetTheServerReports(stream: Bool) async throws {
        let source = try TestPaths.temporaryDirectory()
        let file = try Self.makeFile(source, "reported.bin", bytes: 12_000_000)
        let server = try await TestServer()
        let (proxy, port) = try await Self.startProxy(to: server.port, ["--cut-after", "5000000"])
        let upload = ["upload", "--server", "127.0.0.1:\(port)", "--retries", "3"]
        // A stream resumes from the blocks it still holds, a file from wherever the server is.
        let result =
            stream
            ? try await runCommand(
                ["-c", "exec \"$0\" \"$@\" - --name reported.bin < \"$FILE\"", TestPaths.binary.path] + upload,
                executable: "/bin/bash",
                environment: ["FILE": file.path]
            ) : try await runCommand(upload + [file.path])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.events.contains { $0.event == "reconnecting" })
        let status = try #require(result.events.first { $0.event == "status" })
        let saved = try await server.process.waitForEvent { $0.event == "file_saved" }
        // Both sides name where the connection that finished the upload resumed.
        #expect(status.int("resumed_from") == saved.int("resumed_from"))
        #expect((status.int("resumed_from") ?? 0) > 0)
        #expect(Self.sameBytes(file, server.directory.appendingPathComponent("reported.bin")))
        proxy.signal(SIGKILL)
        await server.stop()
    }

    @Test func withoutRetriesALostConnectionExits69AndARerunResumes() async throws {
        let source = try TestPaths.temporaryDirectory()
        let file = try Self.makeFile(source, "resume.bin", bytes: 10_000_000)
        let server = try await TestServer()
        let (proxy, port) = try await Self.startProxy(to: server.port, ["--cut-after", "6000000"])
        let first = try await xfer("upload", "--server", "127.0.0.1:\(port)", "--retries", "0", file.path)
        #expect(first.status == 69)
        #expect(first.events.contains { $0.event == "error" && $0.string("code") == "connection_lost" })
        #expect(!FileManager.default.fileExists(atPath: server.directory.appendingPathComponent("resume.bin").path))
        let second = try await xfer("upload", "--server", "127.0.0.1:\(port)", "--retries", "0", file.path)
        #expect(second.status == 0, "\(second.stderr)")
        let status = try #require(second.events.first { $0.event == "status" })
        #expect((status.int("resumed_from") ?? 0) > 0)
        #expect(Self.sameBytes(file, server.directory.appendingPathComponent("resume.bin")))
        let connections = try await proxy.waitForEvents(count: 2) { $0["conn"] != nil }
        let resumedFrom = status.int("resumed_from") ?? 0
        let secondBytes = connections[1].int("up") ?? .max
        #expect(secondBytes < 10_000_000 - resumedFrom + 100_000)
        proxy.signal(SIGKILL)
        await server.stop()
    }

    @Test func aFlippedByteIsDetectedAndTheBlockResent() async throws {
        let source = try TestPaths.temporaryDirectory()
        let file = try Self.makeFile(source, "flip.bin", bytes: 6_000_000)
        let server = try await TestServer()
        let (proxy, port) = try await Self.startProxy(to: server.port, ["--flip-at", "2500000"])
        let result = try await xfer("upload", "--server", "127.0.0.1:\(port)", file.path)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.events.contains { $0.event == "retry" })
        #expect(Self.sameBytes(file, server.directory.appendingPathComponent("flip.bin")))
        try await server.process.waitForEvent {
            $0.event == "retry" && $0.string("reason")?.contains("checksum") == true
        }
        proxy.signal(SIGKILL)
        await server.stop()
        try await expectValidEvents(result.lines + server.process.lines)
    }

    @Test func killedClientResumesWhenRunAgain() async throws {
        let source = try TestPaths.temporaryDirectory()
        let file = try Self.makeFile(source, "killed.bin", bytes: 40_000_000)
        let server = try await TestServer()
        let (proxy, port) = try await Self.startProxy(to: server.port, ["--rate", "8000000"])
        let upload = try RunningProcess(
            executable: TestPaths.binary.path,
            arguments: ["upload", "--server", "127.0.0.1:\(port)", "--block-size", "256", file.path]
        )
        try await upload.waitForEvent(timeout: 30) { $0.event == "progress" && ($0.int("bytes") ?? 0) > 0 }
        upload.signal(SIGKILL)
        await upload.waitForExit()
        let rerun = try await xfer("upload", "--server", "127.0.0.1:\(port)", "--block-size", "256", file.path)
        if rerun.status == 0, let status = rerun.events.first(where: { $0.event == "status" }) {
            #expect((status.int("resumed_from") ?? 0) > 0, "the killed upload had progress, the rerun should resume")
        } else {
            Issue.record("rerun failed: \(rerun.lines) \(rerun.stderr)")
        }
        #expect(Self.sameBytes(file, server.directory.appendingPathComponent("killed.bin")))
        proxy.signal(SIGKILL)
        await server.stop()
    }

    @Test func aSecondRunOfTheSameUploadTakesOverTheFirst() async throws {
        let source = try TestPaths.temporaryDirectory()
        let file = try Self.makeFile(source, "twice.bin", bytes: 30_000_000)
        let server = try await TestServer()
        let (proxy, port) = try await Self.startProxy(to: server.port, ["--rate", "4000000"])
        let first = try RunningProcess(
            executable: TestPaths.binary.path,
            arguments: ["upload", "--server", "127.0.0.1:\(port)", file.path]
        )
        try await first.waitForEvent(timeout: 30) { $0.event == "progress" && ($0.int("bytes") ?? 0) > 0 }
        let second = try await xfer("upload", "--server", server.url, file.path)
        #expect(second.status == 0, "\(second.stderr)")
        #expect(await first.waitForExit() == 75)
        #expect(first.events.contains { $0.event == "error" && $0.string("code") == "superseded" })
        #expect(Self.sameBytes(file, server.directory.appendingPathComponent("twice.bin")))
        proxy.signal(SIGKILL)
        await server.stop()
    }

    @Test func killedServerRestartedOnTheSameDirectoryResumes() async throws {
        let source = try TestPaths.temporaryDirectory()
        let file = try Self.makeFile(source, "server-killed.bin", bytes: 40_000_000)
        let directory = try TestPaths.temporaryDirectory()
        let first = try await TestServer(directory: directory)
        let port = first.port
        // A paced link keeps the upload running long enough to be interrupted half-way.
        let (proxy, proxyPort) = try await Self.startProxy(to: port, ["--rate", "8000000"])
        let upload = try RunningProcess(
            executable: TestPaths.binary.path,
            arguments: [
                "upload", "--server", "127.0.0.1:\(proxyPort)", "--retries", "0", "--block-size", "256", file.path,
            ]
        )
        try await first.process.waitForEvent(timeout: 30) { $0.event == "progress" && ($0.int("bytes") ?? 0) > 0 }
        first.process.signal(SIGKILL)
        await first.process.waitForExit()
        #expect(await upload.waitForExit() == 69)

        let second = try RunningProcess(
            executable: TestPaths.binary.path,
            arguments: ["serve", "--port", String(port), "--dir", directory.path]
        )
        try await second.waitForEvent { $0.event == "listening" }
        let rerun = try await xfer("upload", "--server", "127.0.0.1:\(port)", "--block-size", "256", file.path)
        #expect(rerun.status == 0, "\(rerun.stderr)")
        let status = try #require(rerun.events.first { $0.event == "status" })
        #expect((status.int("resumed_from") ?? 0) > 0)
        #expect(Self.sameBytes(file, directory.appendingPathComponent("server-killed.bin")))
        second.signal(SIGTERM)
        await second.waitForExit()
        proxy.signal(SIGKILL)
    }

    @Test func aChangedSourceIsNotSplicedWithTheOldBytes() async throws {
        let source = try TestPaths.temporaryDirectory()
        let file = try Self.makeFile(source, "changing.bin", bytes: 8_000_000)
        let server = try await TestServer()
        let (proxy, port) = try await Self.startProxy(to: server.port, ["--cut-after", "5000000"])
        let first = try await xfer("upload", "--server", "127.0.0.1:\(port)", "--retries", "0", file.path)
        #expect(first.status == 69)
        // Same size and modification time, different first bytes: only the end-to-end SHA-256 can tell.
        // (touch -r keeps the nanoseconds that Foundation's dates would round away.)
        let reference = source.appendingPathComponent("mtime-reference")
        _ = try await runCommand(["-r", file.path, reference.path], executable: "/usr/bin/touch")
        let handle = try FileHandle(forWritingTo: file)
        try handle.write(contentsOf: Data(repeating: 0x42, count: 1000))
        try handle.close()
        _ = try await runCommand(["-r", reference.path, file.path], executable: "/usr/bin/touch")
        let second = try await xfer("upload", "--server", "127.0.0.1:\(port)", "--retries", "0", file.path)
        #expect(second.status == 65)
        #expect(second.events.contains { $0.event == "error" && $0.string("code") == "integrity_failed" })
        #expect(!FileManager.default.fileExists(atPath: server.directory.appendingPathComponent("changing.bin").path))
        // The partial was discarded: the next run starts over and succeeds.
        let third = try await xfer("upload", "--server", "127.0.0.1:\(port)", file.path)
        #expect(third.status == 0, "\(third.stderr)")
        #expect(Self.sameBytes(file, server.directory.appendingPathComponent("changing.bin")))
        proxy.signal(SIGKILL)
        await server.stop()
    }

    @Test func limitsAndBadInputFailWithClearCodes() async throws {
        let source = try TestPaths.temporaryDirectory()
        let big = try Self.makeFile(source, "big.bin", bytes: 2_000_000)
        let small = try Self.makeFile(source, "small.bin", bytes: 1000)
        let server = try await TestServer(["--max-file-size", "1M"])
        let tooBig = try await xfer("upload", "--server", server.url, big.path)
        #expect(tooBig.status == 65)
        #expect(tooBig.events.contains { $0.event == "error" && $0.string("code") == "file_too_large" })
        let streamTooBig = try await runCommand(
            ["upload", "--server", server.url, "-", "--name", "s.bin"],
            stdin: String(repeating: "x", count: 1_500_000)
        )
        #expect(streamTooBig.status == 65)
        #expect(try await xfer("upload", "--server", server.url, small.path).status == 0)
        let missing = try await xfer("upload", "--server", server.url, source.appendingPathComponent("nope").path)
        #expect(missing.status == 66)
        #expect(missing.events.contains { $0.event == "error" && $0.string("code") == "input_unreadable" })
        let noName = try await xfer("upload", "--server", server.url, "-")
        #expect(noName.status == 64)
        for threads in ["0", "65", "many"] {
            let bad = try await xfer("upload", "--server", server.url, "--threads", threads, small.path)
            #expect(bad.status == 64, "--threads \(threads)")
            #expect(bad.stderr.contains("--threads"), "--threads \(threads): \(bad.stderr)")
        }
        await server.stop()
        try await expectValidEvents(tooBig.lines + missing.lines + noName.lines)
    }
}

/// A server that runs out of room fails that upload clearly, keeps serving, and keeps the verified part.
@Suite(.timeLimit(.minutes(3)))
struct UploadStorageFailureTests {
    @Test func aFullDiskFailsTheUploadKeepsServingAndKeepsTheVerifiedPart() async throws {
        let source = try TestPaths.temporaryDirectory()
        let big = try UploadTests.makeFile(source, "big.bin", bytes: 6_000_000)
        let small = try UploadTests.makeFile(source, "small.bin", bytes: 100_000)
        let directory = try TestPaths.temporaryDirectory()
        // `ulimit -f` (in 1 KiB units) makes writes past 3 MiB fail with EFBIG, as a full disk would.
        let limited = try RunningProcess(
            executable: "/bin/bash",
            arguments: [
                "-c", "ulimit -f 3072; exec \"$0\" serve --port 0 --dir \"$1\"", TestPaths.binary.path, directory.path,
            ]
        )
        let listening = try await limited.waitForEvent(timeout: 30) { $0.event == "listening" }
        let port = try #require(listening.int("port"))
        let failed = try await xfer("upload", "--server", "127.0.0.1:\(port)", "--retries", "0", big.path)
        #expect(failed.status == 75, "\(failed.lines) \(failed.stderr)")
        #expect(failed.events.contains { $0.event == "error" && $0.string("code") == "disk_full" })
        try await limited.waitForEvent { $0.event == "error" && $0.string("code") == "disk_full" }
        let other = try await xfer("upload", "--server", "127.0.0.1:\(port)", small.path)
        #expect(other.status == 0, "the server keeps serving others: \(other.stderr)")
        limited.signal(SIGTERM)
        #expect(await limited.waitForExit() == 0)

        // With room again, the same command resumes from what was verified.
        let roomy = try await TestServer(directory: directory)
        let resumed = try await xfer("upload", "--server", roomy.url, big.path)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let status = try #require(resumed.events.first { $0.event == "status" })
        #expect((status.int("resumed_from") ?? 0) >= 2 * 1_048_576)
        #expect(UploadTests.sameBytes(big, directory.appendingPathComponent("big.bin")))
        await roomy.stop()
    }
}
