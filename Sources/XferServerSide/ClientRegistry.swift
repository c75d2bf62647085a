import NIOCore
import Synchronization
import XferProtocol

/// The connections of one server: connection slots (the `--max-connections` limit), client ids, and who is
/// connected, for `/health`, the `clients` command and shutdown.
///
/// Texts are not its business: a `MessageRouter` routes them.
public final class ClientRegistry: Sendable {
    struct Client {
        var id: Int
        var channel: Channel
        var peer: String
        var role: ClientKind
        var name: String?
        var timezone: String
    }

    struct State {
        var nextID = 1
        var pending = 0
        var clients: [Int: Client] = [:]
    }

    private let state = Mutex(State())

    /// An empty registry.
    public init() {}

    /// Reserves a connection slot before the upgrade; false when `limit` connections exist already.
    func reserveSlot(limit: Int) -> Bool {
        self.state.withLock { state in
            guard state.clients.count + state.pending < limit else { return false }
            state.pending += 1
            return true
        }
    }

    /// Gives a reserved slot back (the connection closed before the handshake completed).
    func releaseSlot() {
        self.state.withLock { $0.pending -= 1 }
    }

    /// Number of connections that completed the handshake.
    public var count: Int { self.state.withLock { $0.clients.count } }

    /// Assigns the next client id.
    func nextClientID() -> Int {
        self.state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
    }

    /// Registers a connection whose handshake completed, turning its reserved slot into a client.
    func register(id: Int, channel: Channel, peer: String, session: ServerConnectionStateMachine.Session) {
        self.state.withLock { state in
            state.pending -= 1
            state.clients[id] = Client(
                id: id,
                channel: channel,
                peer: peer,
                role: session.role,
                name: session.name,
                timezone: session.timezone
            )
        }
    }

    /// Removes a connection.
    func unregister(id: Int) {
        _ = self.state.withLock { $0.clients.removeValue(forKey: id) }
    }

    /// A summary of one connection, for the `clients` command.
    public struct ClientInfo: Sendable, Equatable {
        public var id: Int
        public var peer: String
        public var role: ClientKind
        public var name: String?
        public var timezone: String
    }

    /// Every connection that completed the handshake, by id.
    public func listing() -> [ClientInfo] {
        self.state.withLock { state in
            state.clients.values.sorted { $0.id < $1.id }.map {
                ClientInfo(id: $0.id, peer: $0.peer, role: $0.role, name: $0.name, timezone: $0.timezone)
            }
        }
    }

    /// The channels of every connection, for shutdown.
    func allChannels() -> [Channel] {
        self.state.withLock { state in state.clients.values.map(\.channel) }
    }
}
