import NIOCore
import XferEvents
import XferProtocol

/// `xfer listen`: prints every text the server delivers, until stopped.
///
/// It keeps the point to resume from after a reconnect: the last `seq` it printed, in the epoch the server's
/// `welcome` named. A session in which nothing was printed keeps the point it started with (moved into the new
/// epoch only when the server accepted it there).
public final class ListenRole: ClientRole {
    private var connection: ClientConnection?
    private var stopRequested = false
    private let name: String?
    /// Where the next session resumes from, or nil for a fresh join.
    public private(set) var resumePoint: ResumePoint?

    /// A listener named `name` that resumes after `resume` (from `--since` or an earlier session), if any.
    public init(name: String?, resume: ResumePoint?) {
        self.name = name
        self.resumePoint = resume
    }

    /// The last `seq` printed (or resumed from), 0 when none.
    public var lastSeq: UInt64 { self.resumePoint?.since ?? 0 }

    public func started(connection: ClientConnection, welcome: [String: String]) {
        self.connection = connection
        if let epoch = welcome["epoch"], let point = self.resumePoint {
            // The server numbers in `epoch`: a point from another epoch was not used (the server started afresh).
            self.resumePoint = point.applies(to: epoch) ? ResumePoint(since: point.since, epoch: epoch) : nil
        }
        self.epoch = welcome["epoch"]
        if self.stopRequested { connection.finish(nil) }
    }

    private var epoch: String?

    public func received(_ message: WireMessage, connection: ClientConnection) {
        switch message {
        case .deliver(let seq, let from, let text):
            self.resumePoint = ResumePoint(since: seq, epoch: self.epoch)
            connection.emit(.textDelivered(from: from, seq: seq, text: text))
        case .missed(let since, let count):
            connection.emit(.missed(name: self.name, since: since, count: count))
        default:
            connection.finish(XferError(.protocolError, "server sent \(message.typeName) to a listener"))
        }
    }

    /// Ends the session with a normal close (1000); called on the connection's event loop.
    public func stop() {
        self.stopRequested = true
        self.connection?.finish(nil)
    }
}
