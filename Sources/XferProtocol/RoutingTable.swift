import NIOCore

/// Where a text from a sender or from `serve`'s stdin should go.
public enum RelayTarget: Sendable, Equatable {
    /// Every listener registered under this name (`xfer listen --name`).
    case name(String)
    /// One connection by its client id.
    case client(Int)
    /// Every listener and plain client.
    case allListeners
}

/// The outcome of routing one text.
public struct RelayResult: Sendable, Equatable {
    /// Connections the text was handed to.
    public var delivered: Int
    /// Copies kept for listener names whose listeners are reconnecting.
    public var held: Int

    /// A result with these counts.
    public init(delivered: Int, held: Int) {
        self.delivered = delivered
        self.held = held
    }
}

/// The decisions of text routing as a value: listener names, their sequence numbers, texts held for names whose
/// listeners are away, and when a name is forgotten.
///
/// It never touches a connection: each input returns the deliveries to make, and the caller writes them (in the
/// order given, which is each name's `seq` order). Time is passed in as monotonic nanoseconds.
///
/// Texts are counted per *address*: a listener name, or, for a receiver without a name, its own client id.
/// A name is remembered for `holdNanos` after its last listener left; texts routed to it meanwhile are held (at
/// most `maxHeldPerName`, the oldest dropped first, so the `seq` gap shows the loss) and delivered when a listener
/// with that name joins.
public struct RoutingTable: Sendable {
    /// One text to hand to one connection.
    public struct Delivery: Sendable, Equatable {
        /// The receiving connection.
        public var client: Int
        /// The text's number for its address (1-based, per name).
        public var seq: UInt64
        /// Who sent it: `server`, `client-N` or a listener name.
        public var from: String
        /// The text itself.
        public var text: String

        /// A delivery of `text` to `client`.
        public init(client: Int, seq: UInt64, from: String, text: String) {
            self.client = client
            self.seq = seq
            self.from = from
            self.text = text
        }
    }

    /// What routing one text decided.
    public enum RouteAction: Sendable, Equatable {
        /// No such client, or no listener has used the name within the hold period: nothing was sent or held.
        case unknownTarget
        /// Write these deliveries, in order; `result` counts them and the held copies.
        case deliver([Delivery], result: RelayResult)
    }

    /// A text held for a name while its listeners are away.
    struct HeldText: Sendable {
        var seq: UInt64
        var from: String
        var text: String
        var atNanos: UInt64
    }

    /// One address: its next sequence number, the connections reading it, and what is held for it.
    struct Address: Sendable {
        var nextSeq: UInt64 = 1
        var live: Set<Int> = []
        var lastSeenNanos: UInt64 = 0
        var held: CircularBuffer<HeldText> = []
    }

    /// How long a name is remembered after its last listener left, and how long texts are held for it.
    public let holdNanos: UInt64
    /// Most texts held per name.
    public let maxHeldPerName: Int
    /// The address key of every receiving connection.
    private var members: [Int: String] = [:]
    private var addresses: [String: Address] = [:]

    /// An empty table holding texts for `holdSeconds` and at most `maxHeldPerName` per name.
    public init(holdSeconds: Double, maxHeldPerName: Int) {
        self.holdNanos = UInt64(max(0, holdSeconds) * 1e9)
        self.maxHeldPerName = maxHeldPerName
    }

    /// The key texts to `client` are counted under: its name, or its own id.
    static func addressKey(client: Int, name: String?) -> String {
        name ?? "#\(client)"
    }

    /// A connection completed its handshake. Receivers (listeners, plain clients) join their address; the texts
    /// held for it are returned for delivery to this connection, in `seq` order.
    public mutating func joined(client: Int, kind: ClientKind, name: String?, now: UInt64) -> [Delivery] {
        guard kind.receivesTexts else { return [] }
        let key = Self.addressKey(client: client, name: name)
        self.members[client] = key
        var address = self.addresses[key] ?? Address()
        address.live.insert(client)
        address.lastSeenNanos = now
        self.dropExpired(&address, now: now)
        var deliveries: [Delivery] = []
        deliveries.reserveCapacity(address.held.count)
        while let held = address.held.popFirst() {
            deliveries.append(Delivery(client: client, seq: held.seq, from: held.from, text: held.text))
        }
        self.addresses[key] = address
        return deliveries
    }

    /// A connection ended; its name is remembered for `holdNanos`.
    public mutating func left(client: Int, now: UInt64) {
        guard let key = self.members.removeValue(forKey: client), var address = self.addresses[key] else { return }
        address.live.remove(client)
        address.lastSeenNanos = now
        if key.hasPrefix("#") && address.live.isEmpty {
            // An unnamed client never comes back under the same id: nothing to hold for it.
            self.addresses[key] = nil
        } else {
            self.addresses[key] = address
        }
    }

    /// Routes `text` from `from` to `target`.
    public mutating func route(_ text: String, from: String, to target: RelayTarget, now: UInt64) -> RouteAction {
        var deliveries: [Delivery] = []
        switch target {
        case .client(let id):
            // Only listeners and plain clients read texts: a sender or an uploader would take it as a protocol error.
            guard let key = self.members[id], var address = self.addresses[key] else { return .unknownTarget }
            let seq = address.nextSeq
            address.nextSeq += 1
            self.addresses[key] = address
            deliveries.append(Delivery(client: id, seq: seq, from: from, text: text))
            return .deliver(deliveries, result: RelayResult(delivered: 1, held: 0))
        case .name(let name):
            guard self.addresses[name] != nil else { return .unknownTarget }
            let result = self.route(text, from: from, toAddress: name, now: now, into: &deliveries)
            if result.delivered == 0 && result.held == 0 { return .unknownTarget }
            return .deliver(deliveries, result: result)
        case .allListeners:
            var total = RelayResult(delivered: 0, held: 0)
            for key in Array(self.addresses.keys) {
                let result = self.route(text, from: from, toAddress: key, now: now, into: &deliveries)
                total.delivered += result.delivered
                total.held += result.held
            }
            return .deliver(deliveries, result: total)
        }
    }

    private mutating func route(
        _ text: String,
        from: String,
        toAddress key: String,
        now: UInt64,
        into deliveries: inout [Delivery]
    ) -> RelayResult {
        guard var address = self.addresses[key] else { return RelayResult(delivered: 0, held: 0) }
        if address.live.isEmpty && now &- address.lastSeenNanos > self.holdNanos {
            self.addresses[key] = nil
            return RelayResult(delivered: 0, held: 0)
        }
        let seq = address.nextSeq
        address.nextSeq += 1
        for id in address.live {
            deliveries.append(Delivery(client: id, seq: seq, from: from, text: text))
        }
        var held = 0
        if address.live.isEmpty {
            self.dropExpired(&address, now: now)
            address.held.append(HeldText(seq: seq, from: from, text: text, atNanos: now))
            while address.held.count > self.maxHeldPerName {
                address.held.removeFirst()
            }
            held = 1
        }
        self.addresses[key] = address
        return RelayResult(delivered: address.live.count, held: held)
    }

    private func dropExpired(_ address: inout Address, now: UInt64) {
        while let first = address.held.first, now &- first.atNanos > self.holdNanos {
            address.held.removeFirst()
        }
    }

    /// Texts held for `name` right now (for tests and the `clients` listing).
    public func heldCount(for name: String) -> Int {
        self.addresses[name]?.held.count ?? 0
    }
}
