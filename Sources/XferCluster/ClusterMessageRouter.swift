import NIOConcurrencyHelpers
import NIOCore
import PostgresNIO
import Synchronization
import XferProtocol
import XferServerSide

/// Routes texts through the cluster's PostgreSQL, so that they reach listeners on every instance.
///
/// A text is committed before anyone is told: one function call locks the name's row, takes the next `seq` of the
/// name (one numbering for the whole cluster), stores the text and NOTIFYs the name (the payload carries only the
/// name: NOTIFY payloads are limited to 7,999 bytes, texts are not). The status says `ok` only after that commit;
/// `delivered` counts the name's receivers registered on live instances at the commit, `held` the names that had
/// none (their texts wait for the next listener, within the hold limits).
///
/// Each instance delivers to its own connections: on a notification it reads the name's texts after the lowest
/// cursor of its receivers of that name and hands each receiver the texts after its own cursor, in `seq` order, so
/// every receiver gets every text once per connection and in order, whichever instance it was sent from. Reading
/// is serial (one drain at a time). A receiver's registration (and its replay: held texts, or everything after its
/// resume point) is one call that locks the name's row too, so a text is either in the replay or after the cursor.
/// Receivers without a name (plain clients, unnamed listeners) share the `*` stream of broadcasts and number their
/// texts per connection, as on a single server; texts to a client id stay on its instance.
public final class ClusterMessageRouter: MessageRouter {
    private struct Receiver {
        var name: String
        let inbox: any TextInbox
        /// The last `seq` of its name this connection has been given (or skipped).
        var cursor: UInt64 = 0
        /// The next number of a text to an unnamed receiver (its own numbering).
        var ownSeq: UInt64 = 1
        /// Registered in the database and replayed: the drain serves it.
        var active = false
    }

    private struct State {
        var receivers: [Int: Receiver] = [:]
        var byName: [String: Set<Int>] = [:]
        var dirty: Set<String> = []
        var draining = false
    }

    /// One stored text, as the drain reads it.
    struct Row: Sendable {
        var seq: UInt64
        var sender: String
        var body: String
        var onlyInstance: String?
        var onlyClient: Int?
    }

    private let bus: ClusterBus
    private let state = Mutex(State())
    /// Texts waiting to be stored, in call order, and whether a task is storing them.
    private let queue = Mutex<(jobs: [Job], running: Bool)>(([], false))
    /// Held while texts are handed to connections, so each connection gets them in order.
    private let delivering = NIOLock()
    public let holdSeconds: Double
    private let holdMessages: Int
    /// Texts kept per name in the database at least (a burst must outlive the drains of every instance).
    private var keep: Int { max(self.holdMessages, 1000) }
    /// The name of the stream of broadcasts to receivers without a name (not a valid listener name).
    static let unnamed = "*"
    /// Most texts read per query of the drain.
    static let batch = 1000

    /// A router over `bus`, holding texts for `holdSeconds` and replaying at most `holdMessages` per name.
    public init(bus: ClusterBus) {
        self.bus = bus
        self.holdSeconds = bus.settings.holdSeconds
        self.holdMessages = bus.settings.holdMessages
        bus.onDown { [weak self] in self?.dropAll() }
    }

    public var epoch: String { self.bus.epoch }

    public func joined(client: Int, kind: ClientKind, name: String?, resume: ResumePoint?, inbox: any TextInbox) {
        guard kind.receivesTexts else { return }
        let key = name ?? Self.unnamed
        self.state.withLock { $0.receivers[client] = Receiver(name: key, inbox: inbox) }
        let since: Int64 =
            name == nil ? -1 : resume.flatMap { $0.applies(to: self.epoch) ? Int64(clamping: $0.since) : nil } ?? -1
        let instance = self.bus.settings.instance
        let hold = self.holdSeconds
        let most = self.holdMessages
        Task {
            do {
                let rows = try await self.bus.run("register the listener") { connection, logger in
                    let rows = try await connection.query(
                        """
                        SELECT r_seq, r_sender, r_body, r_last, r_missed
                        FROM xfer_join(\(instance)::text, \(client)::integer, \(key)::text, \(since)::bigint,
                                       \(hold)::double precision, \(most)::integer)
                        """,
                        logger: logger
                    )
                    var result: [(seq: Int64?, sender: String?, body: String?, last: Int64, missed: Int64)] = []
                    for try await row in rows.decode((Int64?, String?, String?, Int64, Int64).self) {
                        result.append(row)
                    }
                    return result.map {
                        JoinRow(seq: $0.seq, sender: $0.sender, body: $0.body, last: $0.last, missed: $0.missed)
                    }
                }
                self.activate(client: client, since: since, rows: rows)
            } catch {
                let known = self.state.withLock { state in
                    state.receivers.removeValue(forKey: client) != nil
                }
                if known { inbox.fail(error as? XferError ?? XferError(.clusterUnavailable, "\(error)")) }
            }
        }
    }

    struct JoinRow: Sendable {
        var seq: Int64?
        var sender: String?
        var body: String?
        var last: Int64
        var missed: Int64
    }

    /// The registration committed: replay, then let the drain serve the receiver from the name's last `seq`.
    private func activate(client: Int, since: Int64, rows: [JoinRow]) {
        let last = UInt64(clamping: rows.first?.last ?? 0)
        let missed = UInt64(clamping: rows.first?.missed ?? 0)
        let activated: String? = self.delivering.withLock {
            guard let receiver = self.state.withLock({ $0.receivers[client] }) else { return nil }
            if missed > 0 { receiver.inbox.missed(since: UInt64(since), count: missed) }
            for row in rows {
                guard let seq = row.seq, let sender = row.sender, let body = row.body else { continue }
                // A refused replayed text is lost to this connection, which is being closed as a slow consumer.
                _ = receiver.inbox.deliver(seq: UInt64(seq), from: sender, text: body)
            }
            return self.state.withLock { state in
                guard var current = state.receivers[client] else { return nil }
                current.cursor = last
                current.active = true
                state.receivers[client] = current
                state.byName[current.name, default: []].insert(client)
                return current.name
            }
        }
        guard let name = activated else {
            // It left while registering: take the registration back.
            self.unregister(client: client)
            return
        }
        // Texts committed between the registration and now were announced before the drain knew this receiver.
        self.notify(name: name)
    }

    public func left(client: Int) {
        let removed = self.state.withLock { state -> Bool in
            guard let receiver = state.receivers.removeValue(forKey: client) else { return false }
            state.byName[receiver.name]?.remove(client)
            if state.byName[receiver.name]?.isEmpty == true { state.byName[receiver.name] = nil }
            return true
        }
        if removed { self.unregister(client: client) }
    }

    private func unregister(client: Int) {
        let instance = self.bus.settings.instance
        Task {
            _ = try? await self.bus.run("unregister the listener") { connection, logger in
                try await connection.query(
                    "SELECT xfer_leave(\(instance)::text, \(client)::integer)",
                    logger: logger
                )
            }
        }
    }

    /// The links went down: every receiver is sent away (it reconnects and resumes where PostgreSQL is reachable).
    private func dropAll() {
        let inboxes = self.state.withLock { state -> [any TextInbox] in
            let inboxes = state.receivers.values.map(\.inbox)
            state.receivers = [:]
            state.byName = [:]
            state.dirty = []
            return inboxes
        }
        let error = XferError(
            .clusterUnavailable,
            "this server lost its PostgreSQL: reconnect (xfer listen resumes after the last seq it printed)"
        )
        for inbox in inboxes { inbox.fail(error) }
    }

    // MARK: Routing

    public func route(
        _ text: String,
        from: String,
        to target: RelayTarget,
        on loop: EventLoop
    ) -> EventLoopFuture<RelayResult?> {
        let hold = self.holdSeconds
        let keep = self.keep
        switch target {
        case .name(let name):
            let promise = loop.makePromise(of: RelayResult?.self)
            self.enqueue(.toName(StoreJob(name: name, sender: from, body: text, promise: promise)))
            return promise.futureResult
        case .allListeners:
            let promise = loop.makePromise(of: RelayResult?.self)
            self.enqueue(
                .other(promise) {
                    try await self.bus.run("store the text") { connection, logger in
                        let rows = try await connection.query(
                            """
                            SELECT r_delivered, r_held FROM xfer_broadcast(\(from)::text, \(text)::text,
                                                                           \(hold)::double precision, \(keep)::integer)
                            """,
                            logger: logger
                        )
                        var result = RelayResult(delivered: 0, held: 0)
                        for try await (delivered, held) in rows.decode((Int32, Int32).self) {
                            result = RelayResult(delivered: Int(delivered), held: Int(held))
                        }
                        return result
                    }
                }
            )
            return promise.futureResult
        case .client(let id):
            return self.route(text, from: from, toClient: id, on: loop)
        }
    }

    /// A text to one connection of this instance: an unnamed one gets it at once with its own numbering; a named
    /// one through its name's stream (one numbering per name), marked for that connection only.
    private func route(
        _ text: String,
        from: String,
        toClient id: Int,
        on loop: EventLoop
    ) -> EventLoopFuture<
        RelayResult?
    > {
        let receiver = self.state.withLock { $0.receivers[id] }
        guard let receiver, receiver.active else { return loop.makeSucceededFuture(nil) }
        if receiver.name == Self.unnamed {
            let delivered = self.delivering.withLock { () -> Bool in
                let seq = self.state.withLock { state -> UInt64? in
                    guard var current = state.receivers[id] else { return nil }
                    defer { current.ownSeq += 1 }
                    let seq = current.ownSeq
                    state.receivers[id] = current
                    return seq
                }
                guard let seq else { return false }
                return receiver.inbox.deliver(seq: seq, from: from, text: text)
            }
            return loop.makeSucceededFuture(RelayResult(delivered: delivered ? 1 : 0, held: 0))
        }
        let instance = self.bus.settings.instance
        let name = receiver.name
        let keep = self.keep
        let promise = loop.makePromise(of: RelayResult?.self)
        self.enqueue(
            .other(promise) {
                try await self.bus.run("store the text") { connection, logger in
                    let rows = try await connection.query(
                        """
                        SELECT xfer_route_one(\(name)::text, \(from)::text, \(text)::text, \(keep)::integer,
                                              \(instance)::text, \(id)::integer)
                        """,
                        logger: logger
                    )
                    var seq: Int64?
                    for try await (value) in rows.decode(Int64?.self) { seq = value }
                    return seq == nil ? nil : RelayResult(delivered: 1, held: 0)
                }
            }
        )
        return promise.futureResult
    }

    // MARK: Storing texts in call order

    /// A text to a name, waiting to be stored.
    struct StoreJob: Sendable {
        var name: String
        var sender: String
        var body: String
        var promise: EventLoopPromise<RelayResult?>
    }

    enum Job: Sendable {
        case toName(StoreJob)
        case other(EventLoopPromise<RelayResult?>, @Sendable () async throws -> RelayResult?)
    }

    /// Most texts stored by one statement, and most bytes of text in it.
    static let storeBatch = 256
    static let storeBatchBytes = 4 << 20

    /// Texts are stored one statement after the other, in the order `route` was called: a connection's texts are
    /// routed in the order they arrived, so they are committed, and numbered, in that order. (Each statement in
    /// its own task would reach PostgreSQL in any order.) Consecutive texts to one name share a statement, which
    /// locks only that name, as every other statement does: batches cannot deadlock.
    private func enqueue(_ job: Job) {
        let start = self.queue.withLock { queue -> Bool in
            queue.jobs.append(job)
            guard !queue.running else { return false }
            queue.running = true
            return true
        }
        if start { Task { await self.runQueue() } }
    }

    private func runQueue() async {
        while true {
            let jobs = self.queue.withLock { queue -> [Job] in
                if queue.jobs.isEmpty { queue.running = false }
                defer { queue.jobs.removeAll(keepingCapacity: true) }
                return queue.jobs
            }
            if jobs.isEmpty { return }
            var index = jobs.startIndex
            while index < jobs.endIndex {
                switch jobs[index] {
                case .other(let promise, let body):
                    do { promise.succeed(try await body()) } catch { promise.fail(error) }
                    index += 1
                case .toName(let first):
                    var batch = [first]
                    var bytes = first.body.utf8.count
                    index += 1
                    while index < jobs.endIndex, batch.count < Self.storeBatch, bytes < Self.storeBatchBytes,
                        case .toName(let next) = jobs[index], next.name == first.name
                    {
                        batch.append(next)
                        bytes += next.body.utf8.count
                        index += 1
                    }
                    await self.store(batch)
                }
            }
        }
    }

    /// Stores `batch` (texts to one name) in one statement, in order, and answers each text's promise.
    private func store(_ batch: [StoreJob]) async {
        let hold = self.holdSeconds
        let keep = self.keep
        let name = batch[0].name
        let senders = batch.map(\.sender)
        let bodies = batch.map(\.body)
        do {
            let results = try await self.bus.run("store the text") { connection, logger in
                let rows = try await connection.query(
                    """
                    SELECT r_seq, r_delivered FROM xfer_route_many(\(name)::text, \(senders)::text[],
                        \(bodies)::text[], \(hold)::double precision, \(keep)::integer)
                    """,
                    logger: logger
                )
                // No row: the name is unknown (or forgotten), and none of the texts was stored.
                var results = [RelayResult?](repeating: nil, count: senders.count)
                var position = 0
                for try await (_, delivered) in rows.decode((Int64, Int32).self) where position < results.count {
                    results[position] = RelayResult(delivered: Int(delivered), held: delivered == 0 ? 1 : 0)
                    position += 1
                }
                return results
            }
            for (job, result) in zip(batch, results) { job.promise.succeed(result) }
        } catch {
            for job in batch { job.promise.fail(error) }
        }
    }

    // MARK: The drain

    /// A notification: texts were committed for `name`.
    public func notify(name: String) {
        let start = self.state.withLock { state -> Bool in
            guard state.byName[name] != nil else { return false }
            state.dirty.insert(name)
            guard !state.draining else { return false }
            state.draining = true
            return true
        }
        if start { Task { await self.drain() } }
    }

    private func drain() async {
        while true {
            let next = self.state.withLock { state -> (String, UInt64)? in
                while let name = state.dirty.popFirst() {
                    let cursors = (state.byName[name] ?? []).compactMap { id in
                        state.receivers[id].flatMap { $0.active ? $0.cursor : nil }
                    }
                    if let lowest = cursors.min() { return (name, lowest) }
                }
                state.draining = false
                return nil
            }
            guard let next else { return }
            let (name, after) = next
            let batch = Self.batch
            do {
                let rows = try await self.bus.run("read texts") { connection, logger in
                    let rows = try await connection.query(
                        """
                        SELECT seq, sender, body, only_instance, only_client FROM xfer_texts
                        WHERE name = \(name)::text AND seq > \(Int64(clamping: after))::bigint
                        ORDER BY seq LIMIT \(batch)::integer
                        """,
                        logger: logger
                    )
                    var result: [Row] = []
                    for try await (seq, sender, body, onlyInstance, onlyClient) in rows.decode(
                        (Int64, String, String, String?, Int32?).self
                    ) {
                        result.append(
                            Row(
                                seq: UInt64(seq),
                                sender: sender,
                                body: body,
                                onlyInstance: onlyInstance,
                                onlyClient: onlyClient.map(Int.init)
                            )
                        )
                    }
                    return result
                }
                self.deliver(rows, of: name)
                if rows.count == batch { self.state.withLock { _ = $0.dirty.insert(name) } }
            } catch {
                // Down: the receivers are being sent away. A slow answer: try again shortly.
                if self.bus.isUp {
                    try? await Task.sleep(nanoseconds: 100_000_000)
                    self.state.withLock { _ = $0.dirty.insert(name) }
                }
            }
        }
    }

    /// Hands `rows` of `name` to this instance's receivers of it whose cursor is behind each row.
    private func deliver(_ rows: [Row], of name: String) {
        let instance = self.bus.settings.instance
        self.delivering.withLock {
            for row in rows {
                var gaps: [(any TextInbox, since: UInt64, count: UInt64)] = []
                let targets = self.state.withLock { state -> [(any TextInbox, UInt64)] in
                    var targets: [(any TextInbox, UInt64)] = []
                    for id in state.byName[name] ?? [] {
                        guard var receiver = state.receivers[id], receiver.active, receiver.cursor < row.seq else {
                            continue
                        }
                        // A name's seqs have no holes in the table: a hole after the cursor is texts the sweep
                        // took before this drain read them (it fell over a minute behind). Say so, never skip
                        // silently.
                        if row.seq > receiver.cursor + 1, name != Self.unnamed {
                            gaps.append((receiver.inbox, receiver.cursor, row.seq - receiver.cursor - 1))
                        }
                        receiver.cursor = row.seq
                        if let only = row.onlyClient, only != id || row.onlyInstance != instance {
                            state.receivers[id] = receiver
                            continue
                        }
                        var seq = row.seq
                        if name == Self.unnamed {
                            seq = receiver.ownSeq
                            receiver.ownSeq += 1
                        }
                        state.receivers[id] = receiver
                        targets.append((receiver.inbox, seq))
                    }
                    return targets
                }
                for (inbox, since, count) in gaps { inbox.missed(since: since, count: count) }
                for (inbox, seq) in targets {
                    // A refused text is lost to that connection only: it is being closed as a slow consumer.
                    _ = inbox.deliver(seq: seq, from: row.sender, text: row.body)
                }
            }
        }
    }
}
