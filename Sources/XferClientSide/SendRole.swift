import NIOCore
import XferEvents
import XferProtocol
import XferTransport

/// `xfer send`: pipelines text messages within a window and turns the server's answers into `status` events.
public final class SendRole: ClientRole {
    private let source: LineSource
    private var window: SendWindow
    private var maxText = Int.max
    private var connection: ClientConnection?
    private var waitingForInput = false
    private var inputEnded = false
    /// Messages that got `ok: false`, and lines that could not be sent.
    public private(set) var rejected = 0
    public private(set) var invalidInput = 0
    private var firstProblem: XferError?

    /// A sender of `source`'s lines with at most `window` messages in flight.
    public init(source: LineSource, window: Int) {
        self.source = source
        self.window = SendWindow(window: window)
    }

    /// The error the command should exit with, if any message failed.
    public var problem: XferError? { self.firstProblem }

    public func started(connection: ClientConnection, welcome: [String: String]) {
        self.connection = connection
        if let max = welcome["max_text"].flatMap(Int.init) { self.maxText = max }
        self.pump()
    }

    public func writable(connection: ClientConnection) {
        self.pump()
    }

    /// Sends as many lines as the window, the socket and the input allow.
    private func pump() {
        guard let connection = self.connection else { return }
        var sent = false
        while !self.inputEnded && self.window.canSend && connection.isWritable {
            let room = self.window.window - self.window.inFlight
            let loop = connection.eventLoop
            let bound = NIOLoopBound(self, eventLoop: loop)
            let batch = self.source.take(max: room) {
                loop.execute { bound.value.inputArrived() }
            }
            for item in batch.items {
                switch item {
                case .line(let text):
                    if text.utf8.count > self.maxText {
                        self.invalidInput += 1
                        let error = XferError(
                            .messageTooLarge,
                            "message \(self.window.sentCount + UInt64(self.invalidInput)) is \(text.utf8.count) bytes, over the server's limit of \(self.maxText); it was not sent"
                        )
                        self.firstProblem = self.firstProblem ?? error
                        connection.emit(.error(code: error.code.rawValue, message: error.message))
                        continue
                    }
                    _ = self.window.messageSent(now: Monotonic.now())
                    connection.writeText(text)
                    sent = true
                case .invalid(let lineNumber):
                    self.invalidInput += 1
                    let error = XferError(.invalidUTF8, "stdin line \(lineNumber) is not valid UTF-8; it was not sent")
                    self.firstProblem = self.firstProblem ?? error
                    connection.emit(.error(code: error.code.rawValue, message: error.message))
                }
            }
            if let error = batch.error {
                self.firstProblem = self.firstProblem ?? error
                connection.emit(.error(code: error.code.rawValue, message: error.message))
            }
            if batch.ended {
                self.inputEnded = true
                self.window.finishInput()
            } else if batch.items.isEmpty {
                break
            }
        }
        if sent { connection.flush() }
        self.checkFinished()
    }

    private func inputArrived() {
        self.pump()
    }

    private func checkFinished() {
        if self.window.isFinished, let connection = self.connection {
            self.connection = nil
            connection.finish(nil)
        }
    }

    public func received(_ message: WireMessage, connection: ClientConnection) {
        let now = Monotonic.now()
        switch message {
        case .ack(let first, let last):
            guard case .answered(_, _, let times) = self.window.answerReceived(first: first, last: last) else {
                return connection.finish(
                    XferError(.protocolError, "server acknowledged messages \(first)...\(last) out of order")
                )
            }
            for (offset, sentAt) in times.enumerated() {
                connection.emit(
                    .sendStatus(
                        id: first + UInt64(offset),
                        ok: true,
                        delivered: nil,
                        held: nil,
                        code: nil,
                        reason: nil,
                        latencyMs: Double(now - sentAt) / 1e6
                    )
                )
            }
        case .status(let status):
            guard case .answered(_, _, let times) = self.window.answerReceived(first: status.id, last: status.id) else {
                return connection.finish(XferError(.protocolError, "server answered message \(status.id) out of order"))
            }
            if !status.ok {
                self.rejected += 1
                self.firstProblem =
                    self.firstProblem
                    ?? XferError(
                        XferError.Code(rawValue: status.code.isEmpty ? "rejected" : status.code),
                        status.reason
                    )
            }
            connection.emit(
                .sendStatus(
                    id: status.id,
                    ok: status.ok,
                    delivered: status.relayed ? Int(status.delivered) : nil,
                    held: status.relayed ? Int(status.held) : nil,
                    code: status.ok ? nil : status.code,
                    reason: status.ok ? nil : status.reason,
                    latencyMs: Double(now - times[0]) / 1e6
                )
            )
        default:
            return connection.finish(XferError(.protocolError, "server sent \(message.typeName) to a sender"))
        }
        self.pump()
    }
}
