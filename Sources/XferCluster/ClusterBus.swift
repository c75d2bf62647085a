import Dispatch
import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import Synchronization
import XferEvents
import XferProtocol
import XferServerSide

/// One instance's links to the cluster's PostgreSQL, and whether they are up.
///
/// Three connections: one LISTENs on the `xfer_bus` channel (texts committed for a name, requests to let go of an
/// upload), one runs the routing statements (each a single function call, so the connection can be shared), and
/// one holds the session advisory locks of this instance's upload leases and beats the instance's heart every
/// second. When any of them fails, the bus is *down*: a `cluster` event and an `error` event (`cluster_unavailable`)
/// are emitted, `onDown` runs (receivers are sent away, leases are invalid), and the bus reconnects with backoff
/// until all three are back; then the receivers left over from before are removed, `onUp` runs, and a `cluster`
/// event says it is up. The generation counts the ups: a lease taken in an earlier one is no longer held.
public final class ClusterBus: Sendable {
    /// The cluster's address and this instance's name.
    public let settings: ClusterSettings
    private let sink: any EventSink
    private let group: MultiThreadedEventLoopGroup
    private let logger: Logger

    private struct Links: Sendable {
        var listen: PostgresConnection
        var query: PostgresConnection
        var lease: PostgresConnection

        func closeAll() {
            for connection in [self.listen, self.query, self.lease] { connection.close().whenComplete { _ in } }
        }
    }

    private struct State {
        var links: Links?
        var up = false
        var generation: UInt64 = 0
        var epoch = ""
        var stopped = false
        var supervisor: Task<Void, Never>?
        var onNotification: (@Sendable (String) -> Void)?
        var onUp: [@Sendable () -> Void] = []
        var onDown: [@Sendable () -> Void] = []
        var lastSweep = ContinuousClock.now
    }

    private let state = Mutex(State())

    /// Longest wait for one statement before the link counts as lost.
    static let statementTimeout: Double = 5
    /// How often the instance's heartbeat is written; receivers of an instance silent for 5 s do not count.
    static let heartbeatInterval: Double = 1

    /// A bus for `settings`, reporting to `sink`; nothing connects before `start()`.
    public init(settings: ClusterSettings, sink: any EventSink) {
        self.settings = settings
        self.sink = sink
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var logger = Logger(label: "xfer.cluster")
        logger.logLevel = .critical
        self.logger = logger
    }

    /// True while all links are up.
    public var isUp: Bool { self.state.withLock { $0.up } }
    /// Counts the times the links came up; a lease is valid only within the generation it was taken in.
    public var generation: UInt64 { self.state.withLock { $0.generation } }
    /// The cluster's epoch (the `seq` numbering's identity), from the database.
    public var epoch: String { self.state.withLock { $0.epoch } }

    /// What `GET /health` reports: 503 (`cluster_unavailable`) while the links are down, and the instance.
    public var health: HealthState {
        let up = self.isUp
        return HealthState(
            ok: up,
            status: up ? "ok" : XferError.Code.clusterUnavailable.rawValue,
            instance: self.settings.instance
        )
    }

    /// Called with each notification's payload (`t` + name: texts committed; `r` + upload id: let go).
    public func setNotificationHandler(_ handler: @escaping @Sendable (String) -> Void) {
        self.state.withLock { $0.onNotification = handler }
    }

    /// Adds work to do each time the links come back up (not at the first start).
    public func onUp(_ work: @escaping @Sendable () -> Void) {
        self.state.withLock { $0.onUp.append(work) }
    }

    /// Adds work to do each time the links go down.
    public func onDown(_ work: @escaping @Sendable () -> Void) {
        self.state.withLock { $0.onDown.append(work) }
    }

    /// Connects, creates or migrates the tables, registers the instance and starts watching the links.
    ///
    /// Throws `cluster_unavailable` when PostgreSQL cannot be reached or refuses (the caller exits 69).
    public func start() async throws(XferError) {
        let links: Links
        do {
            links = try await self.connect()
        } catch {
            throw XferError(
                .clusterUnavailable,
                "cannot use PostgreSQL at \(self.settings.displayURL) (--cluster): \(Self.describe(error)); check that it runs and that the user may create tables"
            )
        }
        self.state.withLock {
            $0.links = links
            $0.up = true
            $0.generation += 1
        }
        self.sink.emit(.cluster(state: "up", instance: self.settings.instance))
        let task = Task { await self.supervise(links) }
        self.state.withLock { $0.supervisor = task }
    }

    /// Closes the links and stops reconnecting; this instance's receivers are removed from the database first.
    public func stop() async {
        let (links, task) = self.state.withLock { state in
            state.stopped = true
            state.up = false
            return (state.links, state.supervisor)
        }
        if let links {
            _ = try? await Self.withTimeout(2) {
                try await links.query.query(
                    "DELETE FROM xfer_receivers WHERE instance = \(self.settings.instance)",
                    logger: self.logger
                )
            }
            links.closeAll()
        }
        task?.cancel()
        await task?.value
        try? await self.group.shutdownGracefully()
    }

    // MARK: Statements

    /// Runs `body` on the routing connection within the statement timeout. Any failure is `cluster_unavailable`;
    /// a lost connection also takes the bus down.
    func run<Result: Sendable>(
        _ what: String,
        _ body: @escaping @Sendable (PostgresConnection, Logger) async throws -> Result
    ) async throws(XferError) -> Result {
        try await self.run(what, on: \.query, body)
    }

    /// As `run`, on the lease connection (whose session holds the advisory locks).
    func runOnLease<Result: Sendable>(
        _ what: String,
        _ body: @escaping @Sendable (PostgresConnection, Logger) async throws -> Result
    ) async throws(XferError) -> Result {
        try await self.run(what, on: \.lease, body)
    }

    private func run<Result: Sendable>(
        _ what: String,
        on link: KeyPath<Links, PostgresConnection> & Sendable,
        _ body: @escaping @Sendable (PostgresConnection, Logger) async throws -> Result
    ) async throws(XferError) -> Result {
        guard let connection = self.state.withLock({ $0.up ? $0.links?[keyPath: link] : nil }) else {
            throw self.unavailable(what, because: "the connection to PostgreSQL is down; serve reconnects by itself")
        }
        let logger = self.logger
        do {
            return try await Self.withTimeout(Self.statementTimeout) { try await body(connection, logger) }
        } catch {
            if connection.isClosed || error is TimeoutError {
                self.linkFailed(connection, reason: Self.describe(error))
            }
            throw self.unavailable(what, because: Self.describe(error))
        }
    }

    private func unavailable(_ what: String, because reason: String) -> XferError {
        XferError(.clusterUnavailable, "could not \(what) in the cluster's PostgreSQL (\(reason)); try again")
    }

    /// Runs `body` from a thread that may block (the upload store's), waiting for its result.
    static func blocking<Result: Sendable>(
        _ body: @escaping @Sendable () async throws(XferError) -> Result
    ) throws(XferError) -> Result {
        let box = Mutex<Swift.Result<Result, XferError>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task {
            do throws(XferError) {
                let value = try await body()
                box.withLock { $0 = .success(value) }
            } catch {
                box.withLock { $0 = .failure(error) }
            }
            done.signal()
        }
        done.wait()
        return try box.withLock { $0! }.get()
    }

    // MARK: Links

    private func connect() async throws -> Links {
        var configuration = PostgresConnection.Configuration(
            host: self.settings.host,
            port: self.settings.port,
            username: self.settings.user,
            password: self.settings.password,
            database: self.settings.database,
            tls: .disable
        )
        configuration.options.connectTimeout = .seconds(3)
        let loop = self.group.next()
        var opened: [PostgresConnection] = []
        do {
            for id in 0..<3 {
                opened.append(
                    try await PostgresConnection.connect(
                        on: loop,
                        configuration: configuration,
                        id: id,
                        logger: self.logger
                    )
                )
            }
            let links = Links(listen: opened[0], query: opened[1], lease: opened[2])
            let instance = self.settings.instance
            let epoch = try await Self.withTimeout(Self.statementTimeout * 2) {
                try await links.query.query(PostgresQuery(unsafeSQL: ClusterSchema.migration), logger: self.logger)
                try await links.query.query(
                    """
                    INSERT INTO xfer_instances (instance, seen) VALUES (\(instance), now())
                    ON CONFLICT (instance) DO UPDATE SET seen = now()
                    """,
                    logger: self.logger
                )
                // Receivers this instance registered before (an earlier run, or before the link was lost) are gone.
                try await links.query.query(
                    "DELETE FROM xfer_receivers WHERE instance = \(instance)",
                    logger: self.logger
                )
                let rows = try await links.query.query(
                    "SELECT value FROM xfer_meta WHERE key = 'epoch'",
                    logger: self.logger
                )
                var epoch = ""
                for try await (value) in rows.decode(String.self) { epoch = value }
                return epoch
            }
            self.state.withLock { $0.epoch = epoch }
            return links
        } catch {
            for connection in opened { connection.close().whenComplete { _ in } }
            throw error
        }
    }

    /// Watches the links while they are up; when one fails, reconnects with backoff (0.1 s doubling to 2 s).
    private func supervise(_ first: Links) async {
        var links = first
        while !Task.isCancelled {
            let reason = await self.watch(links)
            let (stopped, downWork) = self.state.withLock { state -> (Bool, [@Sendable () -> Void]) in
                let wasUp = state.up
                state.up = false
                state.links = nil
                return (state.stopped, wasUp ? state.onDown : [])
            }
            links.closeAll()
            if stopped { return }
            self.sink.emit([
                .cluster(state: "down", instance: self.settings.instance, message: reason),
                .error(
                    code: XferError.Code.clusterUnavailable.rawValue,
                    message:
                        "lost PostgreSQL at \(self.settings.displayURL) (\(reason)): texts are refused and uploads wait until it is back; /health answers 503; reconnecting"
                ),
            ])
            for work in downWork { work() }
            var delay = 0.1
            while true {
                if Task.isCancelled || self.state.withLock({ $0.stopped }) { return }
                do {
                    links = try await self.connect()
                    break
                } catch {
                    try? await Task.sleep(nanoseconds: UInt64(delay * 1e9))
                    delay = min(delay * 2, 2)
                }
            }
            let upWork = self.state.withLock { state -> [@Sendable () -> Void] in
                state.links = links
                state.up = true
                state.generation += 1
                return state.onUp
            }
            self.sink.emit(.cluster(state: "up", instance: self.settings.instance))
            for work in upWork { work() }
        }
    }

    /// Runs the LISTEN loop and the heartbeat until either fails; returns why.
    private func watch(_ links: Links) async -> String {
        await withTaskGroup(of: String.self) { group in
            group.addTask {
                do {
                    try await links.listen.listen(on: "xfer_bus") { notifications in
                        for try await notification in notifications {
                            let handler = self.state.withLock { $0.onNotification }
                            handler?(notification.payload)
                        }
                    }
                    return "the LISTEN connection ended"
                } catch {
                    return Self.describe(error)
                }
            }
            group.addTask {
                let instance = self.settings.instance
                let keep = max(self.settings.holdSeconds, 30)
                let keepTexts = max(self.settings.holdMessages, 1000)
                while !Task.isCancelled {
                    do {
                        try await Self.withTimeout(Self.statementTimeout) {
                            try await links.lease.query(
                                "UPDATE xfer_instances SET seen = now() WHERE instance = \(instance)",
                                logger: self.logger
                            )
                            try await links.listen.query("SELECT 1", logger: self.logger)
                        }
                        let sweep = self.state.withLock { state in
                            guard state.lastSweep.duration(to: .now) > .seconds(10) else { return false }
                            state.lastSweep = .now
                            return true
                        }
                        if sweep {
                            _ = try await Self.withTimeout(Self.statementTimeout) {
                                try await links.query.query(
                                    "SELECT xfer_sweep(\(keep)::double precision, \(keepTexts)::integer)",
                                    logger: self.logger
                                )
                            }
                        }
                    } catch {
                        return Self.describe(error)
                    }
                    if links.query.isClosed { return "the routing connection closed" }
                    try? await Task.sleep(nanoseconds: UInt64(Self.heartbeatInterval * 1e9))
                }
                return "stopped"
            }
            let reason = await group.next() ?? "stopped"
            group.cancelAll()
            links.closeAll()
            return reason
        }
    }

    /// A statement on `connection` failed in a way that means the link is gone: close everything so that the
    /// watcher notices at once.
    private func linkFailed(_ connection: PostgresConnection, reason: String) {
        let links = self.state.withLock { $0.links }
        links?.closeAll()
    }

    // MARK: Helpers

    struct TimeoutError: Error, CustomStringConvertible {
        var seconds: Double
        var description: String { "no answer within \(self.seconds) s" }
    }

    static func withTimeout<Result: Sendable>(
        _ seconds: Double,
        _ body: @escaping @Sendable () async throws -> Result
    ) async throws -> Result {
        try await withThrowingTaskGroup(of: Result.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
                throw TimeoutError(seconds: seconds)
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
    }

    /// A short description of a PostgresNIO error: the server's message when there is one.
    static func describe(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            if let message = error.serverInfo?[.message] { return message }
            switch error.code {
            case .connectionError: return "connection failed: \(error.underlying.map { "\($0)" } ?? "refused")"
            case .serverClosedConnection, .clientClosedConnection: return "the connection was closed"
            default: return "\(error.code)"
            }
        }
        if let error = error as? TimeoutError { return error.description }
        return "\(error)"
    }
}
