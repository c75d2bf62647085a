/// The client side of pipelined text messages: which ids are in flight, and when another may go.
///
/// `xfer send` keeps up to `window` messages unacknowledged so that 100,000 lines are not 100,000 round trips in
/// a row; statuses come back in order (the server handles one connection's frames in order), so the in-flight
/// set is a FIFO of send times, used to report each message's latency.
public struct SendWindow: Sendable {
    /// Most messages sent but not yet answered.
    public let window: Int
    private var sendTimes: [UInt64] = []
    private var head = 0
    private var nextID: UInt64 = 1
    private var inputFinished = false

    /// What an answer from the server means for the window.
    public enum AnswerAction: Sendable, Equatable {
        /// The answer covers messages `first...last`; their send times are `sentAt` (same order).
        case answered(first: UInt64, last: UInt64, sentAt: [UInt64])
        /// The server answered a message that is not the oldest one in flight: a protocol error.
        case unexpected(String)
    }

    /// A window of `window` messages (at least 1).
    public init(window: Int) {
        precondition(window >= 1, "window must be at least 1, got \(window)")
        self.window = window
        self.sendTimes.reserveCapacity(min(window, 65536))
    }

    /// Messages sent but not yet answered.
    public var inFlight: Int { self.sendTimes.count - self.head }

    /// Whether another message may be sent now.
    public var canSend: Bool { self.inFlight < self.window }

    /// Whether all input was sent and every message was answered.
    public var isFinished: Bool { self.inputFinished && self.inFlight == 0 }

    /// The number of messages sent so far.
    public var sentCount: UInt64 { self.nextID - 1 }

    /// A message goes out at `now` (monotonic nanoseconds); returns its id.
    public mutating func messageSent(now: UInt64) -> UInt64 {
        precondition(self.canSend, "messageSent called with a full window (\(self.inFlight) of \(self.window))")
        precondition(!self.inputFinished, "messageSent called after inputFinished")
        self.sendTimes.append(now)
        defer { self.nextID += 1 }
        return self.nextID
    }

    /// No more messages will be sent.
    public mutating func finishInput() {
        self.inputFinished = true
    }

    /// The server answered messages `first...last` (one status, or an ack run).
    public mutating func answerReceived(first: UInt64, last: UInt64) -> AnswerAction {
        let oldest = self.nextID - UInt64(self.inFlight)
        guard self.inFlight > 0, first == oldest, last >= first, last < self.nextID else {
            return .unexpected(
                "server answered messages \(first)...\(last) but \(self.inFlight > 0 ? "\(oldest)" : "none") was next"
            )
        }
        let count = Int(last - first + 1)
        let times = Array(self.sendTimes[self.head..<(self.head + count)])
        self.head += count
        if self.head > 4096 && self.head * 2 > self.sendTimes.count {
            self.sendTimes.removeFirst(self.head)
            self.head = 0
        }
        return .answered(first: first, last: last, sentAt: times)
    }
}
