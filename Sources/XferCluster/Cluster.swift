import XferEvents
import XferProtocol
import XferServerSide

/// The parts `serve --cluster` plugs into the server: the links to PostgreSQL, the router over them, and the
/// upload store under leases; the bus's notifications go to the router (texts committed for a name) and to the
/// store (another instance asks for an upload).
public final class Cluster: Sendable {
    /// The links to PostgreSQL.
    public let bus: ClusterBus
    /// Texts across instances.
    public let router: ClusterMessageRouter
    /// Uploads under leases.
    public let store: ClusterUploadStore

    /// A cluster member for `settings`, storing uploads through `local`; nothing connects before `start()`.
    public init(settings: ClusterSettings, sink: any EventSink, local: UploadStore) {
        let bus = ClusterBus(settings: settings, sink: sink)
        let router = ClusterMessageRouter(bus: bus)
        let store = ClusterUploadStore(local: local, bus: bus)
        bus.setNotificationHandler { payload in
            guard let kind = payload.first else { return }
            let subject = String(payload.dropFirst())
            switch kind {
            case "t": router.notify(name: subject)
            case "r":
                // `r` ASKER TAB ID: another instance wants upload ID (this one's own asks are not for it).
                let parts = subject.split(separator: "\t", maxSplits: 1).map(String.init)
                guard parts.count == 2, parts[0] != settings.instance else { return }
                store.releaseRequested(parts[1])
            default: break
            }
        }
        self.bus = bus
        self.router = router
        self.store = store
    }

    /// Connects, creates or migrates the tables; throws `cluster_unavailable` when PostgreSQL cannot be used.
    public func start() async throws(XferError) {
        try await self.bus.start()
    }

    /// Unregisters this instance's receivers and closes the links.
    public func stop() async {
        await self.bus.stop()
    }
}
