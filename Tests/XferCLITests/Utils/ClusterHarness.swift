import Foundation
import Testing

/// What the cluster tests need besides the binary: PostgreSQL's server binaries and HAProxy.
///
/// Missing tools skip the cluster suites with a message, unless `CI` is set: then they run and fail, so that a CI
/// machine without them cannot pass by skipping.
enum ClusterTools {
    /// The tools that are missing, as install hints; empty when everything is there.
    static let missing: [String] = {
        var missing: [String] = []
        let postgres =
            ProcessInfo.processInfo.environment["PG_BIN"].map {
                FileManager.default.isExecutableFile(atPath: "\($0)/initdb")
            }
            ?? (((try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []).contains {
                FileManager.default.isExecutableFile(atPath: "/usr/lib/postgresql/\($0)/bin/initdb")
            })
        if !postgres { missing.append("postgresql (PostgreSQL server binaries: initdb, pg_ctl)") }
        if which("haproxy") == nil { missing.append("haproxy") }
        return missing
    }()

    /// `CI` is set to something other than empty, `0` or `false`.
    static let required: Bool = {
        guard let value = ProcessInfo.processInfo.environment["CI"]?.lowercased() else { return false }
        return !["", "0", "false", "no"].contains(value)
    }()

    /// Whether the cluster suites run: the tools are there, or CI demands them.
    static let enabled = missing.isEmpty || required

    /// Fails the test with a clear message when a tool is missing (only reached with `CI` set).
    static func requireTools(sourceLocation: SourceLocation = #_sourceLocation) throws {
        if !missing.isEmpty {
            Issue.record(
                "CI is set but the cluster tests cannot run: missing \(missing.joined(separator: ", ")); `bash .ci/test` installs them",
                sourceLocation: sourceLocation
            )
            throw CancellationError()
        }
    }

    /// The full path of `name` in PATH (plus the sbin directories, where Debian puts haproxy).
    static func which(_ name: String) -> String? {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/sbin:/sbin:/usr/local/sbin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}

/// A throw-away PostgreSQL run by Tests/Support/pgharness.sh in a temporary directory, on a free port.
final class TestPostgres: @unchecked Sendable {
    let directory: URL
    let url: String

    private init(directory: URL, url: String) {
        self.directory = directory
        self.url = url
    }

    /// `initdb` into a new temporary directory and start it; returns once it accepts connections.
    static func start() async throws -> TestPostgres {
        let directory = try TestPaths.temporaryDirectory().appendingPathComponent("pg")
        let result = try await Self.harness("start", directory)
        let url = try #require(result.lines.last, "pgharness.sh start printed no URL: \(result.stderr)")
        return TestPostgres(directory: directory, url: url)
    }

    /// Stops it (fast shutdown: every client connection is cut).
    func stop() async throws {
        try await Self.harness("stop", self.directory)
    }

    /// Starts it again on the same port with the same data.
    func restart() async throws {
        try await Self.harness("restart", self.directory)
    }

    /// Stops it if it runs and removes its directory.
    func destroy() async {
        _ = try? await Self.harness("destroy", self.directory)
    }

    @discardableResult
    private static func harness(_ verb: String, _ directory: URL) async throws -> CommandResult {
        let result = try await runCommand(
            ["bash", TestPaths.support("pgharness.sh"), verb, directory.path],
            executable: "/usr/bin/env",
            timeout: 90
        )
        #expect(result.status == 0, "pgharness.sh \(verb) failed: \(result.stderr)")
        guard result.status == 0 else { throw CancellationError() }
        return result
    }
}

/// One `xfer serve --cluster` of a test cluster.
final class ClusterInstance: @unchecked Sendable {
    let name: String
    let process: RunningProcess
    let port: Int

    init(name: String, process: RunningProcess, port: Int) {
        self.name = name
        self.process = process
        self.port = port
    }

    /// `ws://127.0.0.1:PORT`, straight to this instance.
    var url: String { "ws://127.0.0.1:\(self.port)" }
    /// `127.0.0.1:PORT`.
    var address: String { "127.0.0.1:\(self.port)" }
    var events: [JSONEvent] { self.process.events }
}

/// PostgreSQL, N `xfer serve --cluster` instances on one shared `--dir`, and optionally HAProxy in front of them
/// with the configuration of examples/cluster/haproxy.cfg (which needs exactly 3 instances).
final class TestCluster: @unchecked Sendable {
    let postgres: TestPostgres
    let directory: URL
    private(set) var instances: [ClusterInstance] = []
    private(set) var balancer: RunningProcess?
    private(set) var balancerPort: Int?

    private init(postgres: TestPostgres, directory: URL) {
        self.postgres = postgres
        self.directory = directory
    }

    /// Starts PostgreSQL and `count` instances named `xfer-1`...; with `haproxy`, HAProxy in front (count 3).
    static func start(instances count: Int, haproxy: Bool = false, extra: [String] = []) async throws -> TestCluster {
        try ClusterTools.requireTools()
        precondition(!haproxy || count == 3, "examples/cluster/haproxy.cfg names 3 instances")
        let postgres = try await TestPostgres.start()
        let cluster = TestCluster(postgres: postgres, directory: try TestPaths.temporaryDirectory())
        do {
            for index in 1...count {
                try await cluster.startInstance(name: "xfer-\(index)", extra: extra)
            }
            if haproxy { try await cluster.startBalancer() }
        } catch {
            await cluster.stop()
            throw error
        }
        return cluster
    }

    /// Starts one more instance on the shared directory and waits for its `cluster` up and `listening` events.
    @discardableResult
    func startInstance(name: String, extra: [String] = []) async throws -> ClusterInstance {
        let process = try RunningProcess(
            executable: TestPaths.binary.path,
            arguments: [
                "serve", "--port", "0", "--dir", self.directory.path, "--cluster", self.postgres.url, "--instance",
                name,
            ] + extra
        )
        let listening = try await process.waitForEvent { $0.event == "listening" }
        #expect(listening.string("instance") == name, "listening names the instance: \(listening)")
        let events = process.events
        let up = events.firstIndex { $0.event == "cluster" && $0.string("state") == "up" }
        let listen = events.firstIndex { $0.event == "listening" }
        #expect(up != nil && up! < listen!, "`cluster` up comes before `listening`: \(process.lines)")
        let instance = ClusterInstance(name: name, process: process, port: try #require(listening.int("port")))
        self.instances.append(instance)
        return instance
    }

    /// Starts HAProxy with examples/cluster/haproxy.cfg in front of the 3 instances, and waits until it routes.
    private func startBalancer() async throws {
        let haproxy = try #require(ClusterTools.which("haproxy"))
        var lastError = ""
        for _ in 0..<5 {
            let port = try freePort()
            var environment = ["XFER_LB_PORT": String(port)]
            for (index, instance) in self.instances.enumerated() {
                environment["XFER_PORT_\(index + 1)"] = String(instance.port)
            }
            let config = TestPaths.root.appendingPathComponent("examples/cluster/haproxy.cfg").path
            let process = try RunningProcess(
                executable: haproxy,
                arguments: ["-db", "-f", config],
                environment: environment,
                stdinNull: true
            )
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline && process.process.isRunning {
                // Ready once every instance passed its first check: until then some requests would get 503.
                if try await self.balancerSeesAllInstances(port: port) {
                    self.balancer = process
                    self.balancerPort = port
                    return
                }
                try await Task.sleep(nanoseconds: 100_000_000)
            }
            lastError = process.stderr
            process.signal(SIGKILL)
            await process.waitForExit()
        }
        Issue.record("HAProxy did not start: \(lastError)")
        throw CancellationError()
    }

    /// Whether /health through HAProxy answered from every instance within a few tries.
    private func balancerSeesAllInstances(port: Int) async throws -> Bool {
        var seen = Set<String>()
        for index in 0..<30 {
            let health = try await httpGet("http://127.0.0.1:\(port)/health?upload=probe-\(index)")
            guard health.status == 200, let name = health.json?["instance"] as? String else { return false }
            seen.insert(name)
        }
        return seen.count == self.instances.count
    }

    /// `127.0.0.1:PORT` of HAProxy.
    var balancerAddress: String {
        "127.0.0.1:\(self.balancerPort ?? 0)"
    }

    /// The instance named `name`.
    func instance(_ name: String) -> ClusterInstance? {
        self.instances.first { $0.name == name }
    }

    /// Starts a cluster, runs `body` with it, and stops it whether `body` throws or not.
    static func with(
        instances count: Int,
        haproxy: Bool = false,
        extra: [String] = [],
        _ body: (TestCluster) async throws -> Void
    ) async throws {
        let cluster = try await Self.start(instances: count, haproxy: haproxy, extra: extra)
        do {
            try await body(cluster)
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    /// Stops HAProxy, every instance (SIGTERM; one already killed just exits), PostgreSQL, and removes the files.
    func stop() async {
        if let balancer = self.balancer {
            balancer.signal(SIGTERM)
            await balancer.waitForExit()
        }
        for instance in self.instances {
            instance.process.signal(SIGTERM)
        }
        for instance in self.instances {
            await instance.process.waitForExit()
        }
        await self.postgres.destroy()
        try? FileManager.default.removeItem(at: self.directory)
    }
}

/// A plain HTTP GET with curl: the status code and the body (parsed when it is a JSON object).
struct HTTPAnswer: @unchecked Sendable {
    var status: Int
    var body: String
    var json: [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(self.body.utf8))) as? [String: Any]
    }
}

func httpGet(_ url: String) async throws -> HTTPAnswer {
    let result = try await runCommand(
        ["-s", "--max-time", "10", "-w", "\n%{http_code}", url],
        executable: "/usr/bin/curl",
        timeout: 20
    )
    let status = result.lines.last.flatMap { Int($0) } ?? 0
    return HTTPAnswer(status: status, body: result.lines.dropLast().joined(separator: "\n"))
}

/// `xfer send ...` retried while it fails with `no_listener` (exit 65), for up to 10 s: a listener registered on
/// another instance is visible once its `connected` is printed, but a test should not hang on that detail.
func sendRetryingNoListener(_ arguments: [String], stdin: String? = nil) async throws -> CommandResult {
    let deadline = Date().addingTimeInterval(10)
    while true {
        let result = try await runCommand(arguments, stdin: stdin)
        let noListener = result.events.contains { $0.string("code") == "no_listener" }
        if !noListener || Date() > deadline { return result }
        try await Task.sleep(nanoseconds: 200_000_000)
    }
}
