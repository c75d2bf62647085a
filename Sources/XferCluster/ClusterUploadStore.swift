import PostgresNIO
import Synchronization
import XferProtocol
import XferServerSide

/// Uploads on a `--dir` shared by the instances of a cluster, each written only under a lease.
///
/// The lease of an upload id is a session advisory lock held by the instance's lease connection (PostgreSQL
/// releases it within milliseconds when that connection or the whole instance dies), plus a fencing token in
/// `xfer_leases`, raised by every new holder. It is taken in `open`, before the resume offset is read. An instance
/// that finds the lock held asks the holder to let go (a NOTIFY its connection for the id answers like a local
/// takeover) and throws `busy`: the upload receiver tries again for a while, then closes 1013 and the client
/// retries. A lease is only as good as the link it was taken on: once the links go down, every write and commit of
/// an upload opened before is refused (`cluster_unavailable`), and a commit checks the token in the database, so a
/// stale holder can neither append nor commit. Under the lease, the local store's claim (one connection per id in
/// this process) and its `flock` on the partial file (one process per file) still apply.
public final class ClusterUploadStore: UploadStore {
    struct Lease: Sendable {
        var generation: UInt64
        var token: Int64
    }

    private struct State {
        /// The `requestRelease` of the newest local claim of each id (asked for by another instance).
        var releasers: [String: (token: UInt64, release: @Sendable () -> Void)] = [:]
        var leases: [UploadClaim: Lease] = [:]
    }

    private let local: UploadStore
    private let bus: ClusterBus
    private let state = Mutex(State())

    /// A store writing through `local` (a `LocalUploadStore` on the shared directory) under leases from `bus`.
    public init(local: UploadStore, bus: ClusterBus) {
        self.local = local
        self.bus = bus
    }

    public func claim(
        _ id: String,
        requestRelease: @escaping @Sendable () -> Void,
        whenReady: @escaping @Sendable () -> Void
    ) -> UploadClaim {
        let claim = self.local.claim(id, requestRelease: requestRelease, whenReady: whenReady)
        self.state.withLock { $0.releasers[id] = (claim.token, requestRelease) }
        return claim
    }

    /// Another instance wants upload `id`: the connection writing it here lets go.
    public func releaseRequested(_ id: String) {
        let releaser = self.state.withLock { $0.releasers[id]?.release }
        releaser?()
    }

    public func open(_ offer: UploadOffer, claim: UploadClaim) throws(XferError) -> PartialUpload {
        let generation = self.bus.generation
        guard self.bus.isUp else {
            throw XferError(
                .clusterUnavailable,
                "this server cannot reach its PostgreSQL, so it cannot lease upload \(offer.id); try again"
            )
        }
        let id = offer.id
        let instance = self.bus.settings.instance
        let bus = self.bus
        let locked = try ClusterBus.blocking { () async throws(XferError) -> Bool in
            try await bus.runOnLease("lease the upload") { connection, logger in
                let rows = try await connection.query(
                    "SELECT pg_try_advisory_lock(hashtextextended(\(id)::text, 7878))",
                    logger: logger
                )
                var locked = false
                for try await (value) in rows.decode(Bool.self) { locked = value }
                return locked
            }
        }
        guard locked else {
            _ = try? ClusterBus.blocking { () async throws(XferError) -> Void in
                try await bus.run("ask the holder to let go") { connection, logger in
                    // The asker's name goes along: every instance hears the notification, the asker included.
                    try await connection.query(
                        "SELECT pg_notify('xfer_bus', 'r' || \(instance)::text || chr(9) || \(id)::text)",
                        logger: logger
                    )
                    return ()
                }
            }
            throw XferError(.busy, "another instance is writing upload \(id); it was asked to let go")
        }
        do throws(XferError) {
            let token = try ClusterBus.blocking { () async throws(XferError) -> Int64 in
                try await bus.runOnLease("take the lease") { connection, logger in
                    let rows = try await connection.query(
                        """
                        INSERT INTO xfer_leases (upload, instance, token) VALUES (\(id)::text, \(instance)::text, 1)
                        ON CONFLICT (upload) DO UPDATE
                        SET token = xfer_leases.token + 1, instance = excluded.instance, taken = now()
                        RETURNING token
                        """,
                        logger: logger
                    )
                    var token: Int64 = 0
                    for try await (value) in rows.decode(Int64.self) { token = value }
                    return token
                }
            }
            guard self.bus.generation == generation else {
                throw XferError(.clusterUnavailable, "lost PostgreSQL while leasing upload \(id); try again")
            }
            let lease = Lease(generation: generation, token: token)
            let partial = try self.local.open(offer, claim: claim)
            self.state.withLock { $0.leases[claim] = lease }
            return ClusterPartialUpload(inner: partial, store: self, id: id, lease: lease)
        } catch {
            self.unlock(id, generation: generation)
            throw error
        }
    }

    public func release(_ claim: UploadClaim) {
        self.local.release(claim)
        let lease = self.state.withLock { state -> Lease? in
            if state.releasers[claim.id]?.token == claim.token { state.releasers[claim.id] = nil }
            return state.leases.removeValue(forKey: claim)
        }
        if let lease { self.unlock(claim.id, generation: lease.generation) }
    }

    public func sweep(olderThan seconds: Double) -> Int {
        self.local.sweep(olderThan: seconds)
    }

    /// Lets go of the advisory lock of `id`, if the session it was taken in is still the current one.
    private func unlock(_ id: String, generation: UInt64) {
        guard self.bus.generation == generation else { return }
        let bus = self.bus
        Task {
            _ = try? await bus.runOnLease("release the lease") { connection, logger in
                try await connection.query(
                    "SELECT pg_advisory_unlock(hashtextextended(\(id)::text, 7878))",
                    logger: logger
                )
            }
        }
    }

    /// Whether `lease` is still held: the links have not gone down since it was taken.
    func holds(_ lease: Lease) -> Bool {
        self.bus.isUp && self.bus.generation == lease.generation
    }

    /// Whether the token of `id` in the database is still `lease`'s (no other instance took it over).
    func confirm(_ id: String, _ lease: Lease) throws(XferError) {
        let bus = self.bus
        let current = try ClusterBus.blocking { () async throws(XferError) -> Int64? in
            try await bus.runOnLease("check the lease") { connection, logger in
                let rows = try await connection.query(
                    "SELECT token FROM xfer_leases WHERE upload = \(id)::text",
                    logger: logger
                )
                var token: Int64?
                for try await (value) in rows.decode(Int64.self) { token = value }
                return token
            }
        }
        guard current == lease.token, self.holds(lease) else {
            throw XferError(.superseded, "another instance took upload \(id) over")
        }
    }

    /// The upload was saved: its lease row is no longer needed.
    func finished(_ id: String, _ lease: Lease) {
        let bus = self.bus
        Task {
            _ = try? await bus.runOnLease("forget the lease") { connection, logger in
                try await connection.query(
                    "DELETE FROM xfer_leases WHERE upload = \(id)::text AND token = \(lease.token)::bigint",
                    logger: logger
                )
            }
        }
    }
}

/// A partial upload that writes only while its lease holds.
final class ClusterPartialUpload: PartialUpload {
    private let inner: PartialUpload
    private let store: ClusterUploadStore
    private let id: String
    private let lease: ClusterUploadStore.Lease

    init(inner: PartialUpload, store: ClusterUploadStore, id: String, lease: ClusterUploadStore.Lease) {
        self.inner = inner
        self.store = store
        self.id = id
        self.lease = lease
    }

    var verifiedOffset: UInt64 { self.inner.verifiedOffset }

    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(XferError) -> Int {
        try self.inner.read(at: offset, into: buffer)
    }

    func append(_ bytes: UnsafeRawBufferPointer) throws(XferError) {
        guard self.store.holds(self.lease) else {
            throw XferError(
                .clusterUnavailable,
                "this server lost its PostgreSQL and with it the lease of upload \(self.id); the upload resumes when you retry"
            )
        }
        try self.inner.append(bytes)
    }

    func commit() throws(XferError) -> (name: String, path: String) {
        try self.store.confirm(self.id, self.lease)
        let saved = try self.inner.commit()
        self.store.finished(self.id, self.lease)
        return saved
    }

    func close() { self.inner.close() }

    func discard() { self.inner.discard() }
}
