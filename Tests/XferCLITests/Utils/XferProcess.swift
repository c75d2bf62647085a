import Foundation
import Synchronization
import Testing

/// Paths the end-to-end tests need: the built binary, the package root, the Python helpers.
enum TestPaths {
    /// The package root, found from this file's path.
    static let root: URL = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<4 { url.deleteLastPathComponent() }
        return url
    }()

    /// The `xfer` binary under test: `XFER_BIN`, or the debug build in `.build`.
    static let binary: URL = {
        if let path = ProcessInfo.processInfo.environment["XFER_BIN"] { return URL(fileURLWithPath: path) }
        return root.appendingPathComponent(".build/debug/xfer")
    }()

    /// A Python helper under Tests/Support.
    static func support(_ name: String) -> String {
        root.appendingPathComponent("Tests/Support/\(name)").path
    }

    /// A new empty temporary directory.
    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("xfer-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}

/// A JSON event parsed from a line of stdout.
struct JSONEvent: @unchecked Sendable, CustomStringConvertible {
    let line: String
    let object: [String: Any]

    init?(line: String) {
        guard let data = line.data(using: .utf8),
            let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        else { return nil }
        self.line = line
        self.object = object
    }

    var event: String { self.object["event"] as? String ?? "" }
    subscript(key: String) -> Any? { self.object[key] }
    func string(_ key: String) -> String? { self.object[key] as? String }
    func int(_ key: String) -> Int? { (self.object[key] as? NSNumber)?.intValue }
    func bool(_ key: String) -> Bool? { (self.object[key] as? NSNumber)?.boolValue }
    var description: String { self.line }
}

/// Collected output of a child process, shared with the pipe handlers.
final class OutputCollector: Sendable {
    struct State {
        var lines: [String] = []
        var partial = Data()
        var stderr = Data()
        var closedStreams = 0
    }
    let state = Mutex(State())
}

/// Reads one pipe on a thread of its own and hands each chunk to `onData` (an empty chunk at the end).
///
/// It stops at EOF, or, once told that the process exited, as soon as the pipe is empty: Foundation's
/// `readabilityHandler` sometimes reported EOF 30 s late or not at all, and a pipe end held by another child
/// delays EOF as long as that child lives.
final class PipeReader: Sendable {
    final class Flag: Sendable {
        let value = Atomic<Bool>(false)
    }
    private let exited = Flag()

    init(_ handle: FileHandle, onData: @escaping @Sendable (Data) -> Void) {
        let fd = handle.fileDescriptor
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        let exited = self.exited
        let thread = Thread {
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let ready = poll(&poller, 1, 50)
                if ready > 0 {
                    let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                    if count > 0 {
                        onData(Data(buffer[0..<count]))
                        continue
                    }
                    if count < 0 && (errno == EAGAIN || errno == EINTR) { continue }
                    break  // EOF or an error
                }
                if ready == 0 && exited.value.load(ordering: .acquiring) { break }
                if ready < 0 && errno != EINTR { break }
            }
            onData(Data())
            withExtendedLifetime(handle) {}
        }
        thread.start()
    }

    /// The process is gone: stop once the pipe is empty.
    func processExited() {
        self.exited.value.store(true, ordering: .releasing)
    }
}

/// A running child process whose stdout lines are collected as they arrive.
final class RunningProcess: @unchecked Sendable {
    let process = Process()
    private let collector = OutputCollector()
    private let stdinPipe: Pipe
    private var stdoutReader: PipeReader?
    private var stderrReader: PipeReader?

    /// Held from creating a child's pipes until it runs. Tests start processes in parallel, and a child started
    /// while another child's pipes are open in this process inherits them: a long-lived one (a server) then kept
    /// another command's stdout open, so that its EOF came 30 s late or never. Under the lock, the parent's ends are
    /// marked close-on-exec before any other spawn, and the child's ends are closed by `run()` before the next.
    private static let spawnLock = NSLock()

    /// Starts `executable` with `arguments`; stdin stays open for `writeStdin` unless `stdinNull`.
    init(executable: String, arguments: [String], environment: [String: String]? = nil, stdinNull: Bool = false) throws
    {
        Self.spawnLock.lock()
        defer { Self.spawnLock.unlock() }
        self.stdinPipe = Pipe()
        self.process.executableURL = URL(fileURLWithPath: executable)
        self.process.arguments = arguments
        if let environment {
            self.process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let stdout = Pipe()
        let stderr = Pipe()
        // Close-on-exec on every end: the child gets its own copies as 0-2 (dup2 clears the flag there).
        for pipe in [stdout, stderr, self.stdinPipe] {
            for handle in [pipe.fileHandleForReading, pipe.fileHandleForWriting] {
                _ = fcntl(handle.fileDescriptor, F_SETFD, FD_CLOEXEC)
            }
        }
        self.process.standardOutput = stdout
        self.process.standardError = stderr
        self.process.standardInput = stdinNull ? FileHandle.nullDevice : self.stdinPipe
        let collector = self.collector
        self.stdoutReader = PipeReader(stdout.fileHandleForReading) { data in
            collector.state.withLock { state in
                state.partial.append(data)
                // One pass over the chunk, one removal at the end (removing line by line was quadratic).
                var start = state.partial.startIndex
                while let newline = state.partial[start...].firstIndex(of: UInt8(ascii: "\n")) {
                    state.lines.append(String(decoding: state.partial[start..<newline], as: UTF8.self))
                    start = state.partial.index(after: newline)
                }
                if start != state.partial.startIndex {
                    state.partial = Data(state.partial[start...])
                }
                if data.isEmpty && !state.partial.isEmpty {
                    // The end: the last line had no newline.
                    state.lines.append(String(decoding: state.partial, as: UTF8.self))
                    state.partial.removeAll()
                }
                if data.isEmpty { state.closedStreams += 1 }
            }
        }
        self.stderrReader = PipeReader(stderr.fileHandleForReading) { data in
            collector.state.withLock {
                $0.stderr.append(data)
                if data.isEmpty { $0.closedStreams += 1 }
            }
        }
        try self.process.run()
    }

    /// A test that fails early never reaches its `stop()`: do not leave the process behind.
    deinit {
        if self.process.isRunning {
            kill(self.process.processIdentifier, SIGKILL)
        }
        self.stdoutReader?.processExited()
        self.stderrReader?.processExited()
    }

    /// Every complete stdout line so far.
    var lines: [String] { self.collector.state.withLock { $0.lines } }
    /// Every stdout line so far, parsed.
    var events: [JSONEvent] { self.lines.compactMap(JSONEvent.init(line:)) }
    /// Everything written to stderr so far.
    var stderr: String { self.collector.state.withLock { String(decoding: $0.stderr, as: UTF8.self) } }

    /// Writes `text` to the process's stdin.
    func writeStdin(_ text: String) {
        self.stdinPipe.fileHandleForWriting.write(Data(text.utf8))
    }

    /// Closes the process's stdin (EOF).
    func closeStdin() {
        try? self.stdinPipe.fileHandleForWriting.close()
    }

    /// Waits until an event satisfies `predicate`, or fails the test after `timeout` seconds.
    ///
    /// The default is generous on purpose: it only matters when the event never comes, and a fresh CI machine that
    /// starts every end-to-end test at once has been seen to take more than 10 s before its first processes spoke.
    @discardableResult
    func waitForEvent(
        timeout: Double = 30,
        sourceLocation: SourceLocation = #_sourceLocation,
        _ predicate: (JSONEvent) -> Bool
    ) async throws -> JSONEvent {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let event = self.events.first(where: predicate) { return event }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        Issue.record(
            "no matching event within \(timeout) s; got:\n\(self.lines.suffix(20).joined(separator: "\n"))\nstderr: \(self.stderr.suffix(2000))",
            sourceLocation: sourceLocation
        )
        throw CancellationError()
    }

    /// Waits until `count` events satisfy `predicate`.
    func waitForEvents(count: Int, timeout: Double = 60, _ predicate: (JSONEvent) -> Bool) async throws -> [JSONEvent] {
        let deadline = Date().addingTimeInterval(timeout)
        var matching: [JSONEvent] = []
        while Date() < deadline {
            matching = self.events.filter(predicate)
            if matching.count >= count { return matching }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        Issue.record("only \(matching.count) of \(count) events arrived within \(timeout) s")
        throw CancellationError()
    }

    /// Sends `signal` to the process.
    func signal(_ signal: Int32) {
        kill(self.process.processIdentifier, signal)
    }

    /// Waits for the process to exit (killing it after `timeout` seconds) and returns its status.
    @discardableResult
    func waitForExit(timeout: Double = 20) async -> Int32 {
        let deadline = Date().addingTimeInterval(timeout)
        while self.process.isRunning && Date() < deadline {
            try? await Task.sleep(nanoseconds: 10_000_000)
        }
        if self.process.isRunning {
            kill(self.process.processIdentifier, SIGKILL)
            self.process.waitUntilExit()
        }
        // Read everything the process wrote: the readers stop at EOF, or once the pipe is empty after the exit
        // (a pipe end inherited by another child must not keep them waiting for an EOF that comes late).
        self.stdoutReader?.processExited()
        self.stderrReader?.processExited()
        let drained = Date().addingTimeInterval(30)
        while self.collector.state.withLock({ $0.closedStreams < 2 }) && Date() < drained {
            try? await Task.sleep(nanoseconds: 5_000_000)
        }
        return self.process.terminationStatus
    }
}

/// An `xfer serve` started on port 0 for one test.
final class TestServer: @unchecked Sendable {
    let process: RunningProcess
    let port: Int
    let directory: URL

    /// Starts `xfer serve --port 0 --dir <temp> extra...` and waits for `listening`.
    init(_ extra: [String] = [], directory: URL? = nil, stdinNull: Bool = false) async throws {
        self.directory = try directory ?? TestPaths.temporaryDirectory()
        self.process = try RunningProcess(
            executable: TestPaths.binary.path,
            arguments: ["serve", "--port", "0", "--dir", self.directory.path] + extra,
            stdinNull: stdinNull
        )
        let listening = try await self.process.waitForEvent(timeout: 30) { $0.event == "listening" }
        self.port = try #require(listening.int("port"))
    }

    /// `ws://127.0.0.1:PORT`.
    var url: String { "ws://127.0.0.1:\(self.port)" }

    /// Stops the server with SIGTERM and returns its exit status.
    @discardableResult
    func stop() async -> Int32 {
        self.process.signal(SIGTERM)
        return await self.process.waitForExit()
    }
}

/// The result of running a command to completion.
struct CommandResult: Sendable {
    var status: Int32
    var lines: [String]
    var stderr: String
    var events: [JSONEvent] { self.lines.compactMap(JSONEvent.init(line:)) }
}

/// Runs `xfer args...` (or another executable) with `stdin`, to completion.
func runCommand(
    _ arguments: [String],
    executable: String = TestPaths.binary.path,
    stdin: String? = nil,
    environment: [String: String]? = nil,
    timeout: Double = 60
) async throws -> CommandResult {
    let running = try RunningProcess(
        executable: executable,
        arguments: arguments,
        environment: environment,
        stdinNull: stdin == nil
    )
    if let stdin {
        running.writeStdin(stdin)
        running.closeStdin()
    }
    let status = await running.waitForExit(timeout: timeout)
    return CommandResult(status: status, lines: running.lines, stderr: running.stderr)
}

/// Runs `xfer` and returns its result.
func xfer(
    _ arguments: String...,
    stdin: String? = nil,
    environment: [String: String]? = nil
) async throws -> CommandResult {
    try await runCommand(arguments, stdin: stdin, environment: environment)
}

/// Runs a Tests/Support/wspeer.py mode and returns its JSON lines.
func wsPeer(_ arguments: String..., timeout: Double = 30) async throws -> CommandResult {
    try await runCommand(
        ["python3", TestPaths.support("wspeer.py")] + arguments,
        executable: "/usr/bin/env",
        timeout: timeout
    )
}

/// Checks every line against schema/events.schema.json with Python's jsonschema; records a test issue for each
/// invalid line.
func expectValidEvents(_ lines: [String], sourceLocation: SourceLocation = #_sourceLocation) async throws {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("events-\(UUID().uuidString).jsonl")
    try (lines.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(at: file) }
    let result = try await runCommand(
        [
            "python3", TestPaths.support("validate_events.py"),
            TestPaths.root.appendingPathComponent("schema/events.schema.json").path, file.path,
        ],
        executable: "/usr/bin/env"
    )
    #expect(
        result.status == 0,
        "events failed schema validation:\n\(result.lines.joined(separator: "\n"))\(result.stderr)",
        sourceLocation: sourceLocation
    )
}
