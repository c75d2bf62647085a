import NIOCore

/// Keeps one connection's statuses in message order while relayed messages wait for their routing answer.
///
/// A message that is only emitted gets its `ok` at once, unless an earlier relayed message still waits for its
/// answer: then it queues behind it. Routing answers may come in any order (a router behind a bus); each answer
/// releases, in message order, every status that no longer waits behind an unanswered one.
public struct StatusSequencer: Sendable {
    /// A status that may go out now.
    public enum Release: Sendable, Equatable {
        /// Message `id` was emitted: a plain `ok` (xfer clients get these as acknowledgement runs).
        case ok(UInt64)
        /// A relayed message's status, from its routing answer.
        case status(WireMessage.Status)
    }

    /// One queued status.
    enum Entry: Sendable {
        /// An emitted message, waiting only for the relayed ones before it.
        case ok(UInt64)
        /// A relayed message; its status once the answer came.
        case relayed(UInt64, WireMessage.Status?)
    }

    private var queue: CircularBuffer<Entry> = []

    /// An empty sequencer.
    public init() {}

    /// Whether no status waits.
    public var isEmpty: Bool { self.queue.isEmpty }

    /// Message `id` was emitted: its `ok`, when nothing waits before it, else nil (it is released later).
    public mutating func emitted(id: UInt64) -> Release? {
        guard self.queue.isEmpty else {
            self.queue.append(.ok(id))
            return nil
        }
        return .ok(id)
    }

    /// Message `id` was handed to the router: its status waits for `routed(_:)`.
    public mutating func relayed(id: UInt64) {
        self.queue.append(.relayed(id, nil))
    }

    /// The routing answer for message `status.id` came: every status that may go out now, in message order.
    /// An answer for a message that is not waiting (a connection that was reset meanwhile) releases nothing.
    public mutating func routed(_ status: WireMessage.Status) -> [Release] {
        guard
            let index = self.queue.firstIndex(where: {
                if case .relayed(let id, nil) = $0 { return id == status.id }
                return false
            })
        else { return [] }
        self.queue[index] = .relayed(status.id, status)
        var released: [Release] = []
        while let first = self.queue.first {
            switch first {
            case .ok(let id):
                released.append(.ok(id))
            case .relayed(_, nil):
                return released
            case .relayed(_, let answered?):
                released.append(.status(answered))
            }
            self.queue.removeFirst()
        }
        return released
    }
}
