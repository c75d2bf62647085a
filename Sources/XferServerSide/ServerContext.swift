import NIOCore
import NIOWebSocket
import XferEvents
import XferProtocol
import XferTransport

/// What every connection handler of one server shares.
final class ServerContext: Sendable {
    let configuration: ServerConfiguration
    let registry: ClientRegistry
    let router: any MessageRouter
    let sink: any EventSink
    let isKnownZone: @Sendable (String) -> Bool
    let store: UploadStore
    /// The plain HTTP requests answered besides upgrades.
    let routes: HTTPRoutes
    /// Buffers that upload blocks are unmasked into, shared by all connections and reused once a block is written
    /// and hashed (a fresh 1 MiB buffer per block cost 50 thousand page faults per GiB).
    let blockBuffers = BufferPool(capacity: UploadOffer.defaultBlockSize + 4096, limit: 24)
    /// Open connections per client address (`--max-connections-per-address`).
    let addresses: AddressLimiter

    init(
        configuration: ServerConfiguration,
        registry: ClientRegistry,
        router: any MessageRouter,
        sink: any EventSink,
        store: UploadStore,
        routes: HTTPRoutes = HTTPRoutes(),
        isKnownZone: @escaping @Sendable (String) -> Bool
    ) {
        self.routes = routes
        self.addresses = AddressLimiter(limit: configuration.maxConnectionsPerAddress)
        self.configuration = configuration
        self.registry = registry
        self.router = router
        self.sink = sink
        self.store = store
        self.isKnownZone = isKnownZone
    }
}
