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

    /// What a joining receiver gets: the texts to replay to it, in `seq` order, and what it missed.
    public struct Join: Sendable, Equatable {
        /// Held texts (or, for a resume, every text after its point that is still held), in `seq` order.
        public var deliveries: [Delivery]
        /// For a resume: the texts after its point that are no longer held (`since`, `count`), if any.
        public var missed: (since: UInt64, count: UInt64)?

        /// A join result with these parts.
        public init(deliveries: [Delivery], missed: (since: UInt64, count: UInt64)? = nil) {
            self.deliveries = deliveries
            self.missed = missed
        }

        public static func == (lhs: Join, rhs: Join) -> Bool {
            lhs.deliveries == rhs.deliveries && lhs.missed?.since == rhs.missed?.since
                && lhs.missed?.count == rhs.missed?.count
        }
    }

    /// A text kept for a listener name: for a resume within the hold period, and, while `pending`, for the next
    /// listener that joins the name (it was routed while no listener was there).
    struct HeldText: Sendable {
        var seq: UInt64
        var from: String
        var text: String
        var atNanos: UInt64
        var pending: Bool
    }

    /// One address: its next sequence number, the connections reading it, and the texts kept for it.
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
    /// The next `seq` of names that were forgotten, so that a name used again continues its numbering and a
    /// listener resuming under it never takes new texts for old ones (a few bytes per name ever used).
    private var retiredSeqs: [String: UInt64] = [:]
    /// Most forgotten names whose numbering is kept; beyond it the numbering of an arbitrary one is let go, so a
    /// client inventing names cannot grow the table (about 150 bytes each: 15 MB at most).
    static let maxRetiredNames = 100_000
    /// When the next sweep of expired texts and forgotten names is due (monotonic nanoseconds).
    private var nextSweepNanos: UInt64 = 0

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
    ///
    /// A fresh listener gets the texts routed to its name while no listener was there. A listener resuming after
    /// `since` (a named one; the caller checked the epoch) gets every text after `since` that is still held, and
    /// `missed` counts those that are not; a `since` past the name's last text means the numbering is not the
    /// one it knew, and it joins as a fresh listener.
    public mutating func joined(
        client: Int,
        kind: ClientKind,
        name: String?,
        since: UInt64? = nil,
        now: UInt64
    ) -> Join {
        guard kind.receivesTexts else { return Join(deliveries: []) }
        self.sweepIfDue(now: now)
        let key = Self.addressKey(client: client, name: name)
        self.members[client] = key
        var address = self.addresses[key] ?? self.newAddress(key)
        address.live.insert(client)
        address.lastSeenNanos = now
        self.dropExpired(&address, now: now)
        var join = Join(deliveries: [])
        let lastSeq = address.nextSeq - 1
        if let since, name != nil, since <= lastSeq {
            let oldest = address.held.first?.seq ?? address.nextSeq
            if oldest > since + 1 {
                join.missed = (since, min(oldest - since - 1, lastSeq - since))
            }
            for index in address.held.indices {
                // Texts up to `since` were printed by this listener: no longer pending for anyone.
                address.held[index].pending = false
                let held = address.held[index]
                guard held.seq > since else { continue }
                join.deliveries.append(Delivery(client: client, seq: held.seq, from: held.from, text: held.text))
            }
        } else {
            for index in address.held.indices where address.held[index].pending {
                address.held[index].pending = false
                let held = address.held[index]
                join.deliveries.append(Delivery(client: client, seq: held.seq, from: held.from, text: held.text))
            }
        }
        self.addresses[key] = address
        return join
    }

    private mutating func newAddress(_ key: String) -> Address {
        var address = Address()
        if let next = self.retiredSeqs.removeValue(forKey: key) { address.nextSeq = next }
        return address
    }

    private mutating func forget(_ key: String, _ address: Address) {
        self.addresses[key] = nil
        guard !key.hasPrefix("#") else { return }
        if self.retiredSeqs.count >= Self.maxRetiredNames {
            self.retiredSeqs.remove(at: self.retiredSeqs.startIndex)
        }
        self.retiredSeqs[key] = address.nextSeq
    }

    /// Drops expired texts of every address and forgets names nobody used within the hold period, at most every
    /// second (or a quarter of the hold period): without it, a name that goes quiet would keep its texts until
    /// it is used again.
    private mutating func sweepIfDue(now: UInt64) {
        guard now >= self.nextSweepNanos else { return }
        self.nextSweepNanos = now + max(1_000_000_000, self.holdNanos / 4)
        for key in Array(self.addresses.keys) {
            guard var address = self.addresses[key] else { continue }
            self.dropExpired(&address, now: now)
            if address.live.isEmpty && address.held.isEmpty && now &- address.lastSeenNanos > self.holdNanos {
                // Nobody listened within the hold period and nothing is held any more: as if never used.
                self.forget(key, address)
            } else {
                self.addresses[key] = address
            }
        }
    }

    /// Forgotten names whose numbering is kept (for tests).
    var retiredCount: Int { self.retiredSeqs.count }

    /// Texts kept for `name` right now, delivered or not (for tests).
    func keptCount(for name: String) -> Int {
        self.addresses[name]?.held.count ?? 0
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
        self.sweepIfDue(now: now)
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
            self.forget(key, address)
            return RelayResult(delivered: 0, held: 0)
        }
        let seq = address.nextSeq
        address.nextSeq += 1
        for id in address.live {
            deliveries.append(Delivery(client: id, seq: seq, from: from, text: text))
        }
        var held = 0
        if !key.hasPrefix("#") {
            // Named addresses keep every text for the hold period, so that a listener can resume after its seq.
            self.dropExpired(&address, now: now)
            address.held.append(
                HeldText(seq: seq, from: from, text: text, atNanos: now, pending: address.live.isEmpty)
            )
            while address.held.count > self.maxHeldPerName {
                address.held.removeFirst()
            }
            held = address.live.isEmpty ? 1 : 0
        }
        self.addresses[key] = address
        return RelayResult(delivered: address.live.count, held: held)
    }

    private func dropExpired(_ address: inout Address, now: UInt64) {
        while let first = address.held.first, now &- first.atNanos > self.holdNanos {
            address.held.removeFirst()
        }
    }

    /// Texts held for `name` right now and not yet handed to any listener (for tests and the `clients` listing).
    public func heldCount(for name: String) -> Int {
        self.addresses[name]?.held.lazy.filter(\.pending).count ?? 0
    }
}
