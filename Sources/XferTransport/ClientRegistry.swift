import NIOCore
import NIOWebSocket
import Synchronization
import XferEvents
import XferProtocol

/// Where a text from a sender or from `serve`'s stdin should go.
public enum RelayTarget: Sendable, Equatable {
    /// Every listener registered under this name (`xfer listen --name`).
    case name(String)
    /// One connection by its client id.
    case client(Int)
    /// Every listener and plain client.
    case allListeners
}

/// The outcome of a relay.
public struct RelayResult: Sendable, Equatable {
    /// Connections the text was written to.
    public var delivered: Int
    /// Copies kept for listener names whose listeners are reconnecting.
    public var held: Int

    public init(delivered: Int, held: Int) {
        self.delivered = delivered
        self.held = held
    }
}

/// All live connections of one server, their listener names, and texts held for listeners that are away.
///
/// Connections live on different event loops, so the registry is shared and locked. Frames written to another
/// connection's channel from here are queued on that channel's loop in the order of the writes, and the lock is
/// held while a name's sequence number is taken and its frames written, so every listener sees its texts in
/// sequence order.
public final class ClientRegistry: Sendable {
    /// How long a listener name is remembered after its last listener left, and how long texts are held for it.
    public let holdSeconds: Double
    /// Most texts held per name; the oldest is dropped beyond it (its `seq` gap shows the loss).
    public let maxHeldPerName: Int

    struct Client {
        var id: Int
        var channel: Channel
        var peer: String
        var role: String
        var name: String?
        var timezone: String
        var plain: Bool
        var connectedAtMs: Int64
        var isReceiver: Bool { self.plain || self.role == "listen" }
        /// The key under which sequence numbers are counted: the name, or the client's own id.
        var address: String { self.name ?? "#\(self.id)" }
    }

    struct Held {
        var seq: UInt64
        var from: String
        var text: String
        var atNanos: UInt64
    }

    struct Address {
        var nextSeq: UInt64 = 1
        var live: Set<Int> = []
        var lastSeenNanos: UInt64 = 0
        var held: CircularBuffer<Held> = []
    }

    struct State {
        var nextID = 1
        var pending = 0
        var clients: [Int: Client] = [:]
        var addresses: [String: Address] = [:]
    }

    private let state = Mutex(State())

    /// A registry that holds texts for `holdSeconds` and at most `maxHeldPerName` per name.
    public init(holdSeconds: Double = 60, maxHeldPerName: Int = 1000) {
        self.holdSeconds = holdSeconds
        self.maxHeldPerName = maxHeldPerName
    }

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

    /// Registers a connection whose handshake completed, turning its reserved slot into a client, and writes
    /// any texts held for its name.
    func register(
        id: Int,
        channel: Channel,
        peer: String,
        session: ServerConnectionStateMachine.Session,
        plain: Bool
    ) {
        let now = Monotonic.now()
        self.state.withLock { state in
            state.pending -= 1
            let client = Client(
                id: id,
                channel: channel,
                peer: peer,
                role: session.role,
                name: session.name,
                timezone: session.timezone,
                plain: plain,
                connectedAtMs: 0
            )
            state.clients[id] = client
            guard client.isReceiver else { return }
            var address = state.addresses[client.address] ?? Address()
            address.live.insert(id)
            address.lastSeenNanos = now
            self.dropExpired(&address, now: now)
            while let held = address.held.popFirst() {
                Self.write(seq: held.seq, from: held.from, text: held.text, to: client)
            }
            state.addresses[client.address] = address
        }
    }

    /// Removes a connection; its name is remembered for `holdSeconds`.
    func unregister(id: Int) {
        let now = Monotonic.now()
        self.state.withLock { state in
            guard let client = state.clients.removeValue(forKey: id) else { return }
            guard client.isReceiver, var address = state.addresses[client.address] else { return }
            address.live.remove(id)
            address.lastSeenNanos = now
            if client.name == nil && address.live.isEmpty {
                // An unnamed client never comes back under the same id: nothing to hold for it.
                state.addresses[client.address] = nil
            } else {
                state.addresses[client.address] = address
            }
        }
    }

    /// Sends `text` from `from` to `target`; nil when the target is unknown (no such client, or no listener has
    /// used the name within the hold period).
    public func relay(_ text: String, from: String, to target: RelayTarget) -> RelayResult? {
        let now = Monotonic.now()
        return self.state.withLock { state -> RelayResult? in
            switch target {
            case .client(let id):
                // Only listeners and plain clients read texts: a sender or an uploader would take it as a
                // protocol error.
                guard let client = state.clients[id], client.isReceiver else { return nil }
                var address = state.addresses[client.address] ?? Address()
                let seq = address.nextSeq
                address.nextSeq += 1
                state.addresses[client.address] = address
                Self.write(seq: seq, from: from, text: text, to: client)
                return RelayResult(delivered: 1, held: 0)
            case .name(let name):
                guard state.addresses[name] != nil else { return nil }
                let result = self.relay(text, from: from, toAddress: name, state: &state, now: now)
                if result.delivered == 0 && result.held == 0 { return nil }
                return result
            case .allListeners:
                var total = RelayResult(delivered: 0, held: 0)
                for key in Array(state.addresses.keys) {
                    let result = self.relay(text, from: from, toAddress: key, state: &state, now: now)
                    total.delivered += result.delivered
                    total.held += result.held
                }
                return total
            }
        }
    }

    private func relay(
        _ text: String,
        from: String,
        toAddress key: String,
        state: inout State,
        now: UInt64
    )
        -> RelayResult
    {
        guard var address = state.addresses[key] else { return RelayResult(delivered: 0, held: 0) }
        if address.live.isEmpty {
            let expired = now &- address.lastSeenNanos > UInt64(self.holdSeconds * 1e9)
            if expired {
                state.addresses[key] = nil
                return RelayResult(delivered: 0, held: 0)
            }
        }
        let seq = address.nextSeq
        address.nextSeq += 1
        var delivered = 0
        for id in address.live {
            if let client = state.clients[id] {
                Self.write(seq: seq, from: from, text: text, to: client)
                delivered += 1
            }
        }
        var held = 0
        if delivered == 0 {
            self.dropExpired(&address, now: now)
            address.held.append(Held(seq: seq, from: from, text: text, atNanos: now))
            if address.held.count > self.maxHeldPerName { address.held.removeFirst() }
            held = 1
        }
        state.addresses[key] = address
        return RelayResult(delivered: delivered, held: held)
    }

    private func dropExpired(_ address: inout Address, now: UInt64) {
        let limit = UInt64(self.holdSeconds * 1e9)
        while let first = address.held.first, now &- first.atNanos > limit {
            address.held.removeFirst()
        }
    }

    private static func write(seq: UInt64, from: String, text: String, to client: Client) {
        let frame: WebSocketFrame
        if client.plain {
            // JSON, like the statuses plain clients get, so that a text can never be mistaken for a status:
            // statuses carry "ok", texts carry "text", "from" and "seq".
            var json: [UInt8] = []
            json.append(contentsOf: #"{"from":"#.utf8)
            JSONLineWriter.appendString(from, to: &json)
            json.append(contentsOf: #","seq":\#(seq),"text":"#.utf8)
            JSONLineWriter.appendString(text, to: &json)
            json.append(UInt8(ascii: "}"))
            var buffer = client.channel.allocator.buffer(capacity: json.count)
            buffer.writeBytes(json)
            frame = WebSocketFrame(fin: true, opcode: .text, data: buffer)
        } else {
            let buffer = WireMessage.deliver(seq: seq, from: from, text: text).encoded(
                allocator: client.channel.allocator
            )
            frame = WebSocketFrame(fin: true, opcode: .binary, data: buffer)
        }
        client.channel.writeAndFlush(frame, promise: nil)
    }

    /// A summary of one connection, for the `clients` command.
    public struct ClientInfo: Sendable {
        public var id: Int
        public var peer: String
        public var role: String
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
