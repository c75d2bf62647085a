/// What one connection has handed to its socket and not yet written: the bound that keeps a peer that does not
/// read from growing the server.
///
/// Every text routed to a connection is counted here before it is written and uncounted once the socket took
/// it. Past `maxBytes` or `maxTexts` the connection is a slow consumer: the text is refused (not delivered), the
/// connection is closed with `slow_consumer`, and every later text is refused too.
public struct OutboundQueue: Sendable {
    /// What to do with a text about to be queued.
    public enum EnqueueAction: Sendable, Equatable {
        /// Write it: it fits (it is now counted until `written(bytes:)`).
        case write
        /// Do not write it, and close the connection as a slow consumer: it was over the limit with `bytes` bytes
        /// and `texts` texts queued. Returned once.
        case closeSlowConsumer(bytes: Int, texts: Int)
        /// Do not write it: the connection is already being closed as a slow consumer.
        case drop
    }

    /// Where the connection stands.
    enum State: Sendable, Equatable {
        /// Within the limits, with this much queued.
        case flowing(bytes: Int, texts: Int)
        /// Over a limit once: closing, nothing more is queued.
        case slowConsumer
    }

    /// Most bytes of texts queued at once.
    public let maxBytes: Int
    /// Most texts queued at once.
    public let maxTexts: Int
    private var state: State = .flowing(bytes: 0, texts: 0)

    /// A queue allowing `maxBytes` bytes and `maxTexts` texts in flight.
    public init(maxBytes: Int, maxTexts: Int) {
        self.maxBytes = maxBytes
        self.maxTexts = maxTexts
    }

    /// Whether the connection was found to be a slow consumer.
    public var isSlowConsumer: Bool { self.state == .slowConsumer }

    /// A text of `bytes` bytes (as framed) is about to be written.
    public mutating func enqueue(bytes: Int) -> EnqueueAction {
        switch self.state {
        case .flowing(let queued, let texts):
            // One text always fits into an empty queue, however large: the text size has its own limit.
            if texts > 0 && (queued + bytes > self.maxBytes || texts + 1 > self.maxTexts) {
                self.state = .slowConsumer
                return .closeSlowConsumer(bytes: queued, texts: texts)
            }
            self.state = .flowing(bytes: queued + bytes, texts: texts + 1)
            return .write
        case .slowConsumer:
            return .drop
        }
    }

    /// A text of `bytes` bytes was written to the socket (or dropped with the connection).
    public mutating func written(bytes: Int) {
        switch self.state {
        case .flowing(let queued, let texts):
            self.state = .flowing(bytes: max(0, queued - bytes), texts: max(0, texts - 1))
        case .slowConsumer:
            // Closing: the counts no longer matter.
            break
        }
    }
}
