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

/// Decides whether an upgrade request may proceed: token, subprotocol.
enum UpgradePolicy {
    enum Decision: Equatable {
        case accept(subprotocol: String?)
        case refuse(HTTPResponseStatus, String)
    }

    static func offersXfer(_ head: HTTPRequestHead) -> Bool {
        head.headers[canonicalForm: "sec-websocket-protocol"].contains { $0 == Substring(WireMessage.subprotocol) }
    }

    static func decide(head: HTTPRequestHead, configuration: ServerConfiguration) -> Decision {
        // RFC 6455 section 4.1: the opening handshake is an HTTP/1.1 (or later) GET request.
        guard head.method == .GET else {
            return .refuse(.badRequest, "a WebSocket upgrade must be a GET request, not \(head.method.rawValue)")
        }
        guard head.version.major > 1 || (head.version.major == 1 && head.version.minor >= 1) else {
            return .refuse(
                .badRequest,
                "a WebSocket upgrade needs HTTP/1.1 or later, not HTTP/\(head.version.major).\(head.version.minor)"
            )
        }
        if let token = configuration.token {
            let presented: String?
            if let header = head.headers.first(name: "authorization"), header.lowercased().hasPrefix("bearer ") {
                presented = String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces)
            } else {
                presented = ServerURL.queryValue("token", in: head.uri)
            }
            guard let presented, constantTimeEquals(presented, token) else {
                return .refuse(
                    .unauthorized,
                    presented == nil
                        ? "this server needs a token: pass --token (or XFER_TOKEN), or ?token= for plain clients"
                        : "wrong token: check --token or XFER_TOKEN"
                )
            }
        }
        return .accept(subprotocol: offersXfer(head) ? WireMessage.subprotocol : nil)
    }
}
