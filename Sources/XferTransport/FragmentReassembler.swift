import NIOCore
import NIOWebSocket

/// Joins fragmented WebSocket messages (RFC 6455 section 5.4) for both ends of a connection.
///
/// Control frames may arrive between fragments and are not its business (the handlers answer them at once);
/// it sees only text, binary and continuation frames, with their payloads already unmasked.
package struct FragmentReassembler {
    /// What one data frame completed.
    package enum Outcome {
        /// A whole message: a frame with FIN set, or the last fragment of one.
        case message(WebSocketOpcode, ByteBuffer)
        /// A fragment was kept; the message goes on.
        case incomplete
        /// The frames break RFC 6455 section 5.4 (close with 1002).
        case protocolViolation(String)
        /// The message grew past `maxMessageBytes` (close with 1009).
        case tooLarge
    }

    /// Largest message kept while it arrives in fragments.
    package let maxMessageBytes: Int
    private var partial: (opcode: WebSocketOpcode, buffer: ByteBuffer)?

    /// A reassembler refusing fragmented messages over `maxMessageBytes`.
    package init(maxMessageBytes: Int) {
        self.maxMessageBytes = maxMessageBytes
    }

    /// A text, binary or continuation frame arrived with this (unmasked) payload.
    package mutating func receive(opcode: WebSocketOpcode, fin: Bool, data: ByteBuffer) -> Outcome {
        switch opcode {
        case .text, .binary:
            guard self.partial == nil else {
                return .protocolViolation("a new data frame arrived inside a fragmented message")
            }
            if fin { return .message(opcode, data) }
            self.partial = (opcode, data)
            return self.checkSize()
        case .continuation:
            guard var partial = self.partial else {
                return .protocolViolation("a continuation frame arrived with no message to continue")
            }
            self.partial = nil
            var data = data
            partial.buffer.writeBuffer(&data)
            if fin { return .message(partial.opcode, partial.buffer) }
            self.partial = partial
            return self.checkSize()
        default:
            preconditionFailure("FragmentReassembler got control frame \(opcode)")
        }
    }

    private mutating func checkSize() -> Outcome {
        if let partial = self.partial, partial.buffer.readableBytes > self.maxMessageBytes {
            self.partial = nil
            return .tooLarge
        }
        return .incomplete
    }
}
