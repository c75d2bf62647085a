import NIOCore
import XferEvents
import XferProtocol

/// `xfer listen`: prints every text the server delivers, until stopped.
public final class ListenRole: ClientRole {
    private var connection: ClientConnection?
    private var stopRequested = false
    /// The last sequence number seen per sender address, to report gaps.
    public private(set) var lastSeq: UInt64 = 0

    /// A listener that has seen texts up to `lastSeq` in earlier sessions.
    public init(lastSeq: UInt64 = 0) {
        self.lastSeq = lastSeq
    }

    public func started(connection: ClientConnection, welcome: [String: String]) {
        self.connection = connection
        if self.stopRequested { connection.finish(nil) }
    }

    public func received(_ message: WireMessage, connection: ClientConnection) {
        guard case .deliver(let seq, let from, let text) = message else {
            return connection.finish(XferError(.protocolError, "server sent \(message.typeName) to a listener"))
        }
        self.lastSeq = seq
        connection.emit(.textDelivered(from: from, seq: seq, text: text))
    }

    /// Ends the session with a normal close (1000); called on the connection's event loop.
    public func stop() {
        self.stopRequested = true
        self.connection?.finish(nil)
    }
}
