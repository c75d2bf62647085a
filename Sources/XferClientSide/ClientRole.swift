import NIOCore
import NIOWebSocket
import XferEvents
import XferProtocol

/// What a client command does once connected; called on the connection's event loop.
///
/// `ClientConnectionHandler` runs the handshake, heart-beat and closing handshake; a role decides what to send
/// and what incoming messages mean. A role ends the session by calling `connection.finish(...)`.
public protocol ClientRole: AnyObject {
    /// The server accepted `hello`; `welcome` holds its fields. Start sending.
    func started(connection: ClientConnection, welcome: [String: String])
    /// A control message other than `welcome`/`error` arrived.
    func received(_ message: WireMessage, connection: ClientConnection)
    /// A text frame arrived.
    func receivedText(_ text: String, connection: ClientConnection)
    /// The socket became writable again after back-pressure.
    func writable(connection: ClientConnection)
    /// The connection closed; the role must not use `connection` any more.
    func ended(connection: ClientConnection)
}

extension ClientRole {
    public func receivedText(_ text: String, connection: ClientConnection) {}
    public func writable(connection: ClientConnection) {}
    public func ended(connection: ClientConnection) {}
}
