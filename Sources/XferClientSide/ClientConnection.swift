import NIOCore
import NIOWebSocket
import XferEvents
import XferProtocol

/// The handle a role uses to talk to the server; valid only on the connection's event loop.
public final class ClientConnection {
    let context: ChannelHandlerContext
    unowned let handler: ClientConnectionHandler

    init(context: ChannelHandlerContext, handler: ClientConnectionHandler) {
        self.context = context
        self.handler = handler
    }

    /// The channel's allocator.
    public var allocator: ByteBufferAllocator { self.context.channel.allocator }

    /// Whether the socket accepts more writes without queueing (back-pressure from the kernel).
    public var isWritable: Bool { self.context.channel.isWritable }

    /// Writes a text frame (masked, as RFC 6455 section 5.3 requires of clients); call `flush()` after a batch.
    public func writeText(_ text: String) {
        var buffer = self.context.channel.allocator.buffer(capacity: text.utf8.count)
        buffer.writeString(text)
        self.handler.write(WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: buffer), flush: false)
    }

    /// Writes a control message.
    public func writeControl(_ message: WireMessage) {
        self.handler.write(
            WebSocketFrame(
                fin: true,
                opcode: .binary,
                maskKey: .random(),
                data: message.encoded(allocator: self.allocator)
            ),
            flush: false
        )
    }

    /// Writes a complete, already masked WebSocket frame (header included) built on another thread, past NIO's
    /// frame encoder (whose byte-wise masking would cost more than everything else on large blocks).
    public func writeRawFrame(_ frame: ByteBuffer) {
        self.handler.writeRaw(frame)
    }

    /// Flushes written frames to the socket.
    public func flush() {
        self.context.flush()
    }

    /// Emits events (batched into one stdout write).
    public func emit(_ event: Event) {
        self.handler.appendEvent(event)
    }

    /// Ends the session: with nil, a normal close (1000); with an error, an `error` message and close.
    public func finish(_ error: XferError? = nil) {
        self.handler.finish(error)
    }

    /// The event loop of this connection.
    public var eventLoop: EventLoop { self.context.eventLoop }
}
