import NIOCore
import NIOWebSocket
import Synchronization
import XferProtocol

/// Where routed texts are handed over: the outbound side of one connection.
public protocol TextInbox: Sendable {
    /// Hands one text to the connection; called in `seq` order for each address. Returns false when the
    /// connection refused it: it is over its outbound limit and being closed as a slow consumer (`slow_consumer`),
    /// so the text was not delivered and must not be counted as delivered.
    func deliver(seq: UInt64, from: String, text: String) -> Bool
    /// Tells a resuming listener that `count` texts after `since` are no longer held; called before its replay.
    func missed(since: UInt64, count: UInt64)
    /// Ends the connection with `error` (an `error` message, then the close code of its code): a router that cannot
    /// register the receiver (a bus that is down) sends it away to reconnect, rather than leave it deaf.
    func fail(_ error: XferError)
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
    /// What the `seq` numbers belong to (sent in `welcome`): a listener resumes only within the same epoch.
    var epoch: String { get }
    /// A connection completed its handshake as `kind` (named `name`); receivers get their held texts in `inbox`,
    /// or, with `resume`, every held text after its point (and `missed` first when some are gone).
    func joined(client: Int, kind: ClientKind, name: String?, resume: ResumePoint?, inbox: any TextInbox)
    /// A connection ended.
    func left(client: Int)
    /// Routes `text` from `from` to `target`; the future (on `loop`) holds the result, or nil when the target is
    /// unknown (no such client, or no listener has used the name within the hold period). The future must complete
    /// (a failure when routing is impossible): the connection's later statuses wait behind it.
    func route(
        _ text: String,
        from: String,
        to target: RelayTarget,
        on loop: EventLoop
    ) -> EventLoopFuture<RelayResult?>
}

extension MessageRouter {
    /// A connection joins without asking to resume (senders, uploaders, plain clients, fresh listeners).
    public func joined(client: Int, kind: ClientKind, name: String?, inbox: any TextInbox) {
        self.joined(client: client, kind: kind, name: name, resume: nil, inbox: inbox)
    }
}
