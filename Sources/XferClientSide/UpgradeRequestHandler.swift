import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket
import XferEvents
import XferProtocol

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

    /// Longest token sent: `xfer serve` refuses request headers over 80 KiB in all (HTTP 431), and a refusal sent
    /// while a long request is still arriving can be lost to a connection reset.
    static let maxTokenBytes = 64 * 1024

    func channelActive(context: ChannelHandlerContext) {
        if let token = self.configuration.token, token.utf8.count > Self.maxTokenBytes {
            let error = XferError(
                .unauthorized,
                "the token is \(token.utf8.count) bytes, over the \(Self.maxTokenBytes) bytes a server takes in a request header: check --token or XFER_TOKEN"
            )
            self.outcome.complete(.failed(error, afterWelcome: false))
            context.close(promise: nil)
            return
        }
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
            case .requestHeaderFieldsTooLarge:
                // Our request holds nothing large but the token.
                error = XferError(
                    .unauthorized,
                    "\(self.configuration.server) refused the request as too large (HTTP 431): the token (\(self.configuration.token?.utf8.count ?? 0) bytes) is too long to be right; check --token or XFER_TOKEN"
                )
            case .tooManyRequests:
                error = XferError(
                    .tooManyConnections,
                    detail ?? "\(self.configuration.server) has too many connections from this address; try again later"
                )
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
