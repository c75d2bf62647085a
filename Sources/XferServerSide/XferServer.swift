import Dispatch
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket
import Synchronization
import XferEvents
import XferProtocol
import XferTransport

/// `xfer serve`: binds, upgrades WebSocket connections, answers plain HTTP routes, and shuts down cleanly.
///
/// It is composed of injected parts, each behind a protocol with today's behaviour as its default: where texts go
/// (`MessageRouter`), where events go (`EventSink`), and where uploads are stored. A cluster or a metrics endpoint
/// plugs in there, not into the connection handlers.
public final class XferServer: Sendable {
    let context: ServerContext
    private let group: MultiThreadedEventLoopGroup
    private let channelBox = Mutex<Channel?>(nil)

    /// A server with `configuration`, writing events to `sink`, routing texts through `router`; uploads go to
    /// `store` (by default a `LocalUploadStore` on the configured directory). `GET /metrics` serves `metrics`,
    /// which counts the events it is given: put it in `sink` (a `FanOutEventSink`) too.
    public init(
        configuration: ServerConfiguration,
        sink: any EventSink,
        metrics: MetricsEventSink? = nil,
        registry: ClientRegistry = ClientRegistry(),
        router: any MessageRouter = LocalMessageRouter(),
        store: UploadStore? = nil,
        health: (@Sendable () -> HealthState)? = nil
    ) {
        self.context = ServerContext(
            configuration: configuration,
            registry: registry,
            router: router,
            sink: sink,
            store: store
                ?? LocalUploadStore(directory: configuration.directory, maxFileSize: configuration.maxFileSize),
            routes: Self.routes(registry: registry, metrics: metrics, health: health),
            isKnownZone: { TimeZone(identifier: $0) != nil }
        )
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, configuration.threads))
    }

    /// The registry of connected clients (for stdin commands).
    public var registry: ClientRegistry { self.context.registry }

    /// The router texts go through (for stdin commands).
    public var router: any MessageRouter { self.context.router }

    /// An event loop of the server's group, for work that needs one (routing futures of stdin commands).
    public var eventLoop: EventLoop { self.group.next() }

    /// Binds and starts accepting; emits `listening` with the real port and returns it.
    public func start() async throws -> Int {
        let context = self.context
        let configuration = context.configuration
        // Loaded once, before binding: a bad certificate or key stops `serve` with a clear error at start.
        let sslContext = try configuration.tls?.makeContext()
        let bootstrap = ServerBootstrap(group: self.group)
            .serverChannelOption(.backlog, value: 1024)
            // SPEC.md: a restarted server binds its port again at once.
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)

            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard Self.admit(channel: channel, server: context, tls: sslContext != nil) else { return }
                    if let sslContext {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
                    }
                    try Self.initializeConnection(channel: channel, server: context)
                }
            }
        let channel: Channel
        do {
            channel = try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
        } catch {
            throw XferError(
                .usage,
                "cannot listen on \(configuration.host):\(configuration.port): \(error); choose another --port (0 picks a free one)"
            )
        }
        self.channelBox.withLock { $0 = channel }
        self.scheduleCleanup(on: channel.eventLoop)
        let port = channel.localAddress?.port ?? configuration.port
        context.sink.emit(
            .listening(
                host: configuration.host,
                port: port,
                dir: configuration.directory,
                pid: Int(getpid()),
                tls: configuration.tls != nil
            )
        )
        return port
    }

    /// Removes partial uploads older than the configured TTL now and every hour.
    private func scheduleCleanup(on loop: EventLoop) {
        let store = self.context.store
        let ttl = self.context.configuration.partialTTL
        let clean: @Sendable () -> Void = {
            DispatchQueue.global().async {
                let removed = store.sweep(olderThan: ttl)
                if removed > 0 {
                    // Housekeeping, not an event: a note for the operator on stderr.
                    let note =
                        "xfer: removed \(removed) partial upload(s) idle for over \(ttl / 86400) days (--keep-partial)\n"
                    FileHandle.standardError.write(Data(note.utf8))
                }
            }
        }
        clean()
        loop.scheduleRepeatedTask(initialDelay: .hours(1), delay: .hours(1)) { _ in clean() }
    }

    /// Stops accepting, closes every client with 1001, and waits up to `grace` seconds for them to go.
    public func shutdown(grace: Double = 3) async {
        let listener = self.channelBox.withLock { $0 }
        try? await listener?.close().get()
        let channels = self.context.registry.allChannels()
        for channel in channels {
            channel.pipeline.fireUserInboundEventTriggered(ServerShutdownEvent())
        }
        let deadline = NIODeadline.now() + .nanoseconds(Int64(grace * 1e9))
        for channel in channels {
            let remaining = deadline - NIODeadline.now()
            if remaining <= .zero {
                channel.close(promise: nil)
                continue
            }
            let closed = channel.closeFuture
            let timer = channel.eventLoop.scheduleTask(in: remaining) { channel.close(promise: nil) }
            try? await closed.get()
            timer.cancel()
        }
        try? await self.group.shutdownGracefully()
    }

    /// Waits until the listening socket closes.
    public func waitUntilClosed() async {
        let listener = self.channelBox.withLock { $0 }
        try? await listener?.closeFuture.get()
    }

    /// The plain HTTP routes every server answers: `GET /health`, `GET /metrics` (with `metrics`) and `GET /`.
    /// With `health`, `/health` also names the instance and answers 503 while it is not ok (a cluster whose
    /// PostgreSQL is unreachable), so that a balancer sends clients elsewhere.
    static func routes(
        registry: ClientRegistry,
        metrics: MetricsEventSink? = nil,
        health: (@Sendable () -> HealthState)? = nil
    ) -> HTTPRoutes {
        var routes = HTTPRoutes()
        routes.add(.GET, "/health") { _ in
            let state = health?() ?? HealthState()
            var json =
                #"{"ok":\#(state.ok),"status":"\#(state.status)","version":"\#(XferVersion.current)","clients":\#(registry.count)"#
            if let instance = state.instance {
                var quoted: [UInt8] = []
                JSONLineWriter.appendString(instance, to: &quoted)
                json += #","instance":"# + String(decoding: quoted, as: UTF8.self)
            }
            json += "}"
            return HTTPRoutes.Response(status: state.ok ? .ok : .serviceUnavailable, json: json)
        }
        routes.addOperations(metrics: metrics)
        return routes
    }

    /// Counts a new TCP connection under its address; one over `--max-connections-per-address` gets HTTP 429
    /// (without TLS; a TLS peer only sees the socket close) and is closed before anything else is set up.
    private static func admit(channel: Channel, server: ServerContext, tls: Bool) -> Bool {
        let address = AddressLimiter.key(channel)
        guard server.addresses.open(address) else {
            if tls {
                channel.close(promise: nil)
                return false
            }
            let body = HTTPRoutes.Response.error(
                .tooManyRequests,
                code: XferError.Code.tooManyConnections.rawValue,
                message:
                    "\(address) already has \(server.addresses.limit) connections to this server (--max-connections-per-address); close some or try again later"
            ).body
            var buffer = channel.allocator.buffer(capacity: 160 + body.count)
            buffer.writeString(
                "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
            )
            buffer.writeBytes(body)
            channel.writeAndFlush(buffer).whenComplete { _ in channel.close(promise: nil) }
            return false
        }
        channel.closeFuture.whenComplete { _ in server.addresses.close(address) }
        return true
    }

    private static func initializeConnection(channel: Channel, server: ServerContext) throws {
        let configuration = server.configuration
        let slot = ConnectionSlot()
        let accepted = NIODeadline.now()
        let handshakeDeadline = accepted + .nanoseconds(Int64(configuration.handshakeTimeout * 1e9))
        // Slow clients cannot hold a socket forever: close if the upgrade has not happened by the deadline.
        let upgradeTimer = channel.eventLoop.scheduleTask(deadline: handshakeDeadline) {
            channel.close(promise: nil)
        }
        channel.closeFuture.whenComplete { _ in
            upgradeTimer.cancel()
            if slot.reserved && !slot.handedOver {
                server.registry.releaseSlot()
            }
        }
        let fallback = HTTPFallbackHandler(routes: server.routes, slot: slot)
        let upgrader = NIOWebSocketServerUpgrader(
            maxFrameSize: configuration.maxFrameSize,
            automaticErrorHandling: true,
            shouldUpgrade: { channel, head in
                channel.eventLoop.makeCompletedFuture {
                    let decision = UpgradePolicy.decide(head: head, configuration: configuration)
                    guard case .accept(let subprotocol) = decision else {
                        slot.refusal = decision
                        return nil
                    }
                    guard server.registry.reserveSlot(limit: configuration.maxConnections) else {
                        slot.refusal = .refuse(
                            .serviceUnavailable,
                            "server full: \(configuration.maxConnections) connections already; try again later"
                        )
                        return nil
                    }
                    slot.reserved = true
                    var headers = HTTPHeaders()
                    if let subprotocol { headers.add(name: "Sec-WebSocket-Protocol", value: subprotocol) }
                    return headers
                }
            },
            upgradePipelineHandler: { channel, head in
                channel.eventLoop.makeCompletedFuture {
                    upgradeTimer.cancel()
                    slot.handedOver = true
                    let mode: ServerConnectionStateMachine.Mode =
                        configuration.echo ? .echo : UpgradePolicy.offersXfer(head) ? .xfer : .plain
                    let peer = channel.remoteAddress.map(Self.describe) ?? "unknown"
                    let handler = ServerConnectionHandler(
                        mode: mode,
                        server: server,
                        clientID: server.registry.nextClientID(),
                        peer: peer,
                        handshakeDeadline: handshakeDeadline
                    )
                    // The WebSocket codec is appended behind the HTTP fallback handler: take it out of the way.
                    if let fallback = try? channel.pipeline.syncOperations.handler(type: HTTPFallbackHandler.self) {
                        channel.pipeline.syncOperations.removeHandler(fallback, promise: nil)
                    }
                    // Our decoder takes the place of NIO's: one copy of each payload, unmasked as it is copied
                    // (see ClientFrameDecoder). Nothing has reached NIO's decoder yet: the upgrade handler holds
                    // any early bytes until this returns.
                    let pipeline = channel.pipeline.syncOperations
                    let nioDecoder = try pipeline.handler(type: ByteToMessageHandler<WebSocketFrameDecoder>.self)
                    try pipeline.addHandler(
                        ClientFrameDecoder(maxFrameSize: configuration.maxFrameSize, pool: server.blockBuffers),
                        position: .after(nioDecoder)
                    )
                    pipeline.removeHandler(nioDecoder, promise: nil)
                    try pipeline.addHandler(handler)
                }
            }
        )
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(
            withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in }),
            // HTTPFallbackHandler answers malformed requests itself: 431 for oversized headers, 400 otherwise.
            withErrorHandling: false
        )
        try channel.pipeline.syncOperations.addHandler(fallback)
    }

    static func describe(_ address: SocketAddress) -> String {
        switch address {
        case .v6:
            return "[\(address.ipAddress ?? "?")]:\(address.port ?? 0)"
        default:
            return "\(address.ipAddress ?? "?"):\(address.port ?? 0)"
        }
    }
}
