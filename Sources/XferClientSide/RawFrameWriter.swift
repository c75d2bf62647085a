import NIOCore
import NIOSSL
import NIOWebSocket
import Synchronization
import XferEvents
import XferProtocol

/// Sits next to the socket and writes complete WebSocket frames built elsewhere. Frames written through it and
/// through the encoder keep their order: both paths run synchronously on the same event loop.
final class RawFrameWriter: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func write(_ frame: ByteBuffer) {
        self.context?.write(self.wrapOutboundOut(frame), promise: nil)
    }
}
