import NIOCore
import NIOWebSocket
import Synchronization
import XferProtocol

/// Where routed texts are handed over: the outbound side of one connection.
public protocol TextInbox: Sendable {
    /// Hands one text to the connection; called in `seq` order for each address.
    func deliver(seq: UInt64, from: String, text: String)
}

/// Routes texts to a client id, a listener name or everyone, and answers with the result.
///
/// The server asks it for every relayed text (`xfer send --to/--all`, plain clients' broadcasts are not relayed,
/// stdin `send`/`broadcast`) and tells it which connections can receive texts. The answer is a future, so that an
/// implementation may route through another process (a bus) before it knows the result; the server keeps each
/// connection's statuses in message order whatever order the answers come in. `LocalMessageRouter` is today's
/// in-process behaviour.
public protocol MessageRouter: Sendable {
    /// How long texts are held for a listener name whose listeners are away (for messages to users).
    var holdSeconds: Double { get }
    /// A connection completed its handshake as `kind` (named `name`); receivers get their held texts in `inbox`.
    func joined(client: Int, kind: ClientKind, name: String?, inbox: any TextInbox)
    /// A connection ended.
    func left(client: Int)
    /// Routes `text` from `from` to `target`; the future (on `loop`) holds the result, or nil when the target is
    /// unknown (no such client, or no listener has used the name within the hold period).
    func route(
        _ text: String,
        from: String,
        to target: RelayTarget,
        on loop: EventLoop
    ) -> EventLoopFuture<RelayResult?>
}

/// The in-process router: a `RoutingTable` under a lock, delivering straight into the connections' channels.
///
/// Connections live on different event loops. The lock is held while a text's sequence number is taken and its
/// frames are handed to the channels (which queue them on their own loops in the order of the calls), so every
/// listener sees its texts in `seq` order.
public final class LocalMessageRouter: MessageRouter {
    private struct State {
        var table: RoutingTable
        var inboxes: [Int: any TextInbox] = [:]
    }

    private let state: Mutex<State>
    private let clock: @Sendable () -> UInt64
    public let holdSeconds: Double

    /// A router holding texts for `holdSeconds` and at most `maxHeldPerName` per name; `clock` gives monotonic
    /// nanoseconds.
    public init(
        holdSeconds: Double = 60,
        maxHeldPerName: Int = 1000,
        clock: @escaping @Sendable () -> UInt64 = { NIODeadline.now().uptimeNanoseconds }
    ) {
        self.holdSeconds = holdSeconds
        self.clock = clock
        self.state = Mutex(State(table: RoutingTable(holdSeconds: holdSeconds, maxHeldPerName: maxHeldPerName)))
    }

    public func joined(client: Int, kind: ClientKind, name: String?, inbox: any TextInbox) {
        guard kind.receivesTexts else { return }
        let now = self.clock()
        self.state.withLock { state in
            state.inboxes[client] = inbox
            for delivery in state.table.joined(client: client, kind: kind, name: name, now: now) {
                inbox.deliver(seq: delivery.seq, from: delivery.from, text: delivery.text)
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
        return self.state.withLock { state -> RelayResult? in
            switch state.table.route(text, from: from, to: target, now: now) {
            case .unknownTarget:
                return nil
            case .deliver(let deliveries, let result):
                for delivery in deliveries {
                    state.inboxes[delivery.client]?.deliver(seq: delivery.seq, from: delivery.from, text: delivery.text)
                }
                return result
            }
        }
    }
}

/// A connection's channel as a `TextInbox`: plain clients get a JSON text frame, `xfer` clients a `deliver`
/// message.
struct ChannelInbox: TextInbox {
    let channel: Channel
    let plain: Bool

    func deliver(seq: UInt64, from: String, text: String) {
        var buffer: ByteBuffer
        let opcode: WebSocketOpcode
        if self.plain {
            let json = PlainClientFrame.text(seq: seq, from: from, text: text).json
            buffer = self.channel.allocator.buffer(capacity: json.count)
            buffer.writeBytes(json)
            opcode = .text
        } else {
            buffer = WireMessage.deliver(seq: seq, from: from, text: text).encoded(allocator: self.channel.allocator)
            opcode = .binary
        }
        self.channel.writeAndFlush(WebSocketFrame(fin: true, opcode: opcode, data: buffer), promise: nil)
    }
}
