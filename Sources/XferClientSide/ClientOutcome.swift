import NIOCore
import NIOWebSocket
import XferEvents
import XferProtocol

/// How a client session ended.
public enum ClientOutcome: Sendable {
    /// The role finished its work and the close handshake completed.
    case finished
    /// The session failed with this error; `afterWelcome` says whether the handshake had completed (a listener
    /// reconnects only then, or after a drop).
    case failed(XferError, afterWelcome: Bool)
}
