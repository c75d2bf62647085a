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

/// Answers plain HTTP requests: refused upgrades (401, 503), the route table (`GET /health`), malformed upgrades
/// (400), and everything else (426).
final class HTTPFallbackHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let routes: HTTPRoutes
    private let slot: ConnectionSlot
    private var head: HTTPRequestHead?

    init(routes: HTTPRoutes, slot: ConnectionSlot) {
        self.routes = routes
        self.slot = slot
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break
        case .end:
            guard let head = self.head else { return }
            self.head = nil
            self.respond(context: context, head: head)
        }
    }

    private func respond(context: ChannelHandlerContext, head: HTTPRequestHead) {
        let response: HTTPRoutes.Response
        if case .refuse(let refusedStatus, let message) = self.slot.refusal {
            let code: XferError.Code
            switch refusedStatus {
            case .unauthorized: code = .unauthorized
            case .badRequest: code = .protocolError
            default: code = .serverFull
            }
            response = .error(refusedStatus, code: code.rawValue, message: message)
        } else if let route = self.routes.match(head) {
            response = route(head)
        } else if head.headers[canonicalForm: "upgrade"].isEmpty == false {
            response = .error(
                .badRequest,
                code: "protocol_error",
                message: "malformed WebSocket upgrade request (RFC 6455 section 4.1)"
            )
        } else {
            response = .error(
                .upgradeRequired,
                code: "protocol_error",
                message:
                    "this is an xfer WebSocket server: connect with xfer or a WebSocket client; GET /health for a health check"
            )
        }
        self.slot.refusal = nil
        // HTTP/1.0 closes after the answer unless the client asked to keep the connection (RFC 9112 section 9.3).
        self.write(
            response,
            version: head.version,
            keepAlive: response.status == .ok && head.isKeepAlive,
            context: context
        )
    }

    private func write(
        _ response: HTTPRoutes.Response,
        version: HTTPVersion,
        keepAlive: Bool,
        context: ChannelHandlerContext
    ) {
        let status = response.status
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: response.contentType)
        headers.add(name: "Content-Length", value: String(response.body.count))
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        if status == .upgradeRequired { headers.add(name: "Upgrade", value: "websocket") }
        context.write(
            self.wrapOutboundOut(.head(HTTPResponseHead(version: version, status: status, headers: headers))),
            promise: nil
        )
        var buffer = context.channel.allocator.buffer(capacity: response.body.count)
        buffer.writeBytes(response.body)
        context.write(self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        let done = context.writeAndFlush(self.wrapOutboundOut(.end(nil)))
        if !keepAlive {
            done.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A refused upgrade arrives here as an error before the request itself; the request is answered above.
        if error is NIOWebSocketUpgradeError { return }
        if let parserError = error as? HTTPParserError {
            // The request cannot be parsed (NIO's own error handler is left out so that the answer says why). The
            // decoder closes the channel right after this returns: answer at once.
            let response: HTTPRoutes.Response
            if parserError == .headerOverflow {
                response = .error(
                    .requestHeaderFieldsTooLarge,
                    code: "header_too_large",
                    message:
                        "the request headers are larger than the server's limit of 80 KiB: a token that long cannot be right"
                )
            } else {
                response = .error(
                    .badRequest,
                    code: "protocol_error",
                    message: "malformed HTTP request: \(parserError)"
                )
            }
            self.write(response, version: .http1_1, keepAlive: false, context: context)
            return
        }
        context.close(promise: nil)
    }
}
