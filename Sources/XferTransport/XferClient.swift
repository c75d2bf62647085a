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

/// Sends the upgrade request and turns a refused upgrade (401, 503, ...) into the matching error.
final class UpgradeRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private let configuration: ClientConfiguration
    private let outcome: OutcomeSlot
    private var refusedStatus: HTTPResponseStatus?
    private var body = ""

    init(configuration: ClientConfiguration, outcome: OutcomeSlot) {
        self.configuration = configuration
        self.outcome = outcome
    }

    func channelActive(context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: self.configuration.server.hostHeader)
        headers.add(name: "Sec-WebSocket-Protocol", value: WireMessage.subprotocol)
        headers.add(name: "User-Agent", value: "xfer/\(XferVersion.current)")
        if let token = self.configuration.token {
            headers.add(name: "Authorization", value: "Bearer \(token)")
        }
        let head = HTTPRequestHead(
            version: .http1_1,
            method: .GET,
            uri: self.configuration.server.path,
            headers: headers
        )
        context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.refusedStatus = head.status
        case .body(var buffer):
            if self.body.utf8.count < 4096 { self.body += buffer.readString(length: buffer.readableBytes) ?? "" }
        case .end:
            guard let status = self.refusedStatus else { return }
            let detail = Self.message(fromBody: self.body)
            let error: XferError
            switch status {
            case .unauthorized, .forbidden:
                error = XferError(
                    .unauthorized,
                    detail ?? "\(self.configuration.server) refused the token: check --token or XFER_TOKEN"
                )
            case .serviceUnavailable:
                error = XferError(.serverFull, detail ?? "\(self.configuration.server) is full; try again later")
            default:
                error = XferError(
                    .protocolError,
                    "\(self.configuration.server) answered HTTP \(status.code) instead of upgrading to WebSocket\(detail.map { ": \($0)" } ?? "")"
                )
            }
            self.outcome.complete(.failed(error, afterWelcome: false))
            context.close(promise: nil)
        }
    }

    /// Pulls `"message":"..."` out of the server's JSON error body without a JSON parser.
    static func message(fromBody body: String) -> String? {
        guard let range = body.range(of: #""message":""#) else { return nil }
        let rest = body[range.upperBound...]
        guard let end = rest.firstIndex(of: "\"") else { return nil }
        return String(rest[..<end])
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let tlsError = ClientTLSSettings.describe(error, server: self.configuration.server) {
            self.outcome.complete(.failed(tlsError, afterWelcome: false))
            context.close(promise: nil)
            return
        }
        let message: String
        if error is NIOHTTPClientUpgradeError {
            message = "\(self.configuration.server) refused the WebSocket upgrade (\(error)): is it an xfer server?"
        } else {
            message = "connection to \(self.configuration.server) failed during the upgrade: \(error)"
        }
        self.outcome.complete(.failed(XferError(.protocolError, message), afterWelcome: false))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.outcome.complete(
            .failed(
                XferError(
                    .connectionLost,
                    "\(self.configuration.server) closed the connection during the upgrade"
                        + (self.configuration.server.tls ? "" : " (if it serves TLS, use wss://)")
                ),
                afterWelcome: false
            )
        )
        context.fireChannelInactive()
    }
}
