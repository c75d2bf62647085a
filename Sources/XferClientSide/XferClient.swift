import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket
import XferEvents
import XferProtocol

/// Connects an `xfer` client: TCP, the HTTP upgrade with `xfer.v1`, then hands the channel to a role.
public enum XferClient {
    /// Runs one session of `role` against `configuration.server`; the future completes when it ends.
    ///
    /// `makeRole` is called on the connection's event loop.
    public static func run(
        configuration: ClientConfiguration,
        group: EventLoopGroup,
        sink: EventSink,
        makeRole: @escaping @Sendable () -> ClientRole
    ) -> EventLoopFuture<ClientOutcome> {
        let loop = group.next()
        let outcome = OutcomeSlot(promise: loop.makePromise(of: ClientOutcome.self))
        let server = configuration.server
        let sslContext: NIOSSLContext?
        do {
            sslContext = server.tls ? try configuration.tls.makeContext() : nil
        } catch {
            outcome.complete(.failed(error, afterWelcome: false))
            return outcome.futureResult
        }
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(.nanoseconds(Int64(configuration.connectTimeout * 1e9)))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let proxy = configuration.proxy {
                        // The tunnel first: TLS (with the server's name) and the upgrade run inside it.
                        try channel.pipeline.syncOperations.addHandler(
                            ProxyTunnelHandler(
                                proxy: proxy,
                                server: server,
                                timeout: configuration.connectTimeout,
                                outcome: outcome
                            )
                        )
                    }
                    if let sslContext {
                        // TLS first: the HTTP upgrade and every frame after it travel inside it.
                        let tls = try configuration.tls.makeHandler(context: sslContext, server: server)
                        try channel.pipeline.syncOperations.addHandler(tls)
                    }
                    let requestHandler = UpgradeRequestHandler(configuration: configuration, outcome: outcome)
                    let upgrader = NIOWebSocketClientUpgrader(
                        maxFrameSize: configuration.maxFrameSize,
                        automaticErrorHandling: true,
                        upgradePipelineHandler: { channel, response in
                            channel.eventLoop.makeCompletedFuture {
                                let chosen = response.headers.first(name: "sec-websocket-protocol")
                                guard chosen == WireMessage.subprotocol else {
                                    outcome.complete(
                                        .failed(
                                            XferError(
                                                .protocolError,
                                                "\(server) did not accept subprotocol \(WireMessage.subprotocol): is it an xfer server of a compatible version?"
                                            ),
                                            afterWelcome: false
                                        )
                                    )
                                    channel.close(promise: nil)
                                    return
                                }
                                let handler = ClientConnectionHandler(
                                    configuration: configuration,
                                    role: makeRole(),
                                    sink: sink,
                                    outcome: outcome
                                )
                                try channel.pipeline.syncOperations.addHandler(handler)
                            }
                        }
                    )
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(
                        leftOverBytesStrategy: .forwardBytes,
                        withClientUpgrade: (
                            upgraders: [upgrader],
                            completionHandler: { context in
                                if let handler = try? context.pipeline.syncOperations.handler(
                                    type: UpgradeRequestHandler.self
                                ) {
                                    context.pipeline.syncOperations.removeHandler(handler, promise: nil)
                                }
                            }
                        )
                    )
                    try channel.pipeline.syncOperations.addHandler(requestHandler)
                }
            }
        if let proxy = configuration.proxy {
            bootstrap.connect(host: proxy.host, port: proxy.port).whenFailure { error in
                outcome.complete(
                    .failed(
                        XferError(
                            .proxyFailed,
                            "cannot connect to proxy \(proxy) (for \(server)): \(Self.describe(error)); check --proxy "
                                + "or the *_PROXY variables, or list the server's host in NO_PROXY"
                        ),
                        afterWelcome: false
                    )
                )
            }
            return outcome.futureResult
        }
        bootstrap.connect(host: server.host, port: server.port).whenFailure { error in
            outcome.complete(
                .failed(
                    XferError(
                        .serverUnreachable,
                        "cannot connect to \(server): \(Self.describe(error)); is `xfer serve` running there? (set --server or XFER_SERVER)"
                    ),
                    afterWelcome: false
                )
            )
        }
        return outcome.futureResult
    }

    static func describe(_ error: Error) -> String {
        if let connection = error as? NIOConnectionError {
            if connection.dnsAError != nil && connection.dnsAAAAError != nil && connection.connectionErrors.isEmpty {
                return "cannot resolve host \"\(connection.host)\""
            }
            if let first = connection.connectionErrors.first {
                return Self.describe(first.error)
            }
        }
        if let ioError = error as? IOError {
            switch ioError.errnoCode {
            case 111: return "connection refused"
            case 110: return "timed out"
            case 113, 101: return "no route to host"
            default: return "\(ioError)"
            }
        }
        if error is ChannelError { return "timed out" }
        return "\(error)"
    }
}
