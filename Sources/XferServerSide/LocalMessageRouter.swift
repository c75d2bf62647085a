import NIOConcurrencyHelpers
import NIOCore
import NIOWebSocket
import Synchronization
import XferProtocol

/// The in-process router: a `RoutingTable` under a lock, delivering straight into the connections' channels.
///
/// Connections live on different event loops. Two locks: `delivering` is held for a whole route (or join), from
/// taking the text's sequence number until its frames are handed to the channels (which queue them on their own
/// loops in the order of the calls), so every listener sees its texts in `seq` order; `state` is held only to
/// read and change the table. A write can close a channel on the spot (a peer that reset the connection), and
/// that connection then leaves the router from inside the write: leaving takes only `state`, which the writer
/// no longer holds.
public final class LocalMessageRouter: MessageRouter {
    private struct State {
        var table: RoutingTable
        var inboxes: [Int: any TextInbox] = [:]
    }

    private let state: Mutex<State>
    private let delivering = NIOLock()
    private let clock: @Sendable () -> UInt64
    public let holdSeconds: Double
    /// Random for each router: sequence numbers start again at 1 when the server restarts.
    public let epoch: String

    /// A router holding texts for `holdSeconds` and at most `maxHeldPerName` per name; `clock` gives monotonic
    /// nanoseconds.
    public init(
        holdSeconds: Double = 60,
        maxHeldPerName: Int = 1000,
        clock: @escaping @Sendable () -> UInt64 = { NIODeadline.now().uptimeNanoseconds }
    ) {
        self.holdSeconds = holdSeconds
        self.epoch = String(UInt64.random(in: 1...UInt64.max), radix: 16)
        self.clock = clock
        self.state = Mutex(State(table: RoutingTable(holdSeconds: holdSeconds, maxHeldPerName: maxHeldPerName)))
    }

    public func joined(client: Int, kind: ClientKind, name: String?, resume: ResumePoint?, inbox: any TextInbox) {
        guard kind.receivesTexts else { return }
        let now = self.clock()
        let since = resume.flatMap { $0.applies(to: self.epoch) ? $0.since : nil }
        self.delivering.withLock {
            let join = self.state.withLock { state in
                state.inboxes[client] = inbox
                return state.table.joined(client: client, kind: kind, name: name, since: since, now: now)
            }
            if let missed = join.missed { inbox.missed(since: missed.since, count: missed.count) }
            for delivery in join.deliveries {
                // A refused held text is lost to this connection, which is being closed as a slow consumer.
                _ = inbox.deliver(seq: delivery.seq, from: delivery.from, text: delivery.text)
            }
        }
    }

    public func left(client: Int) {
        let now = self.clock()
        self.state.withLock { state in
            guard state.inboxes.removeValue(forKey: client) != nil else { return }
            state.table.left(client: client, now: now)
        }
    }

    public func route(
        _ text: String,
        from: String,
        to target: RelayTarget,
        on loop: EventLoop
    ) -> EventLoopFuture<RelayResult?> {
        loop.makeSucceededFuture(self.route(text, from: from, to: target))
    }

    /// Routes at once and returns the result (the local router never waits).
    public func route(_ text: String, from: String, to target: RelayTarget) -> RelayResult? {
        let now = self.clock()
        return self.delivering.withLock { () -> RelayResult? in
            let (result, writes) = self.state.withLock {
                state -> (RelayResult?, [(any TextInbox, RoutingTable.Delivery)]) in
                switch state.table.route(text, from: from, to: target, now: now) {
                case .unknownTarget:
                    return (nil, [])
                case .deliver(let deliveries, let result):
                    return (
                        result,
                        deliveries.compactMap { delivery in state.inboxes[delivery.client].map { ($0, delivery) } }
                    )
                }
            }
            var refused = 0
            for (inbox, delivery) in writes
            where !inbox.deliver(seq: delivery.seq, from: delivery.from, text: delivery.text) {
                refused += 1
            }
            // `delivered` counts only the connections that took the text (a slow consumer refuses it).
            return result.map { RelayResult(delivered: $0.delivered - refused, held: $0.held) }
        }
    }
}
