import NIOCore
import XferProtocol

/// The first handler of a client's pipeline when it goes through an HTTP proxy: sends `CONNECT`, reads the
/// answer, and only then lets the rest of the pipeline (TLS, the WebSocket upgrade) see the channel as active,
/// so that everything they send travels inside the tunnel. The decisions are `ProxyTunnelStateMachine`'s.
final class ProxyTunnelHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var machine: ProxyTunnelStateMachine
    private let timeout: Double
    private let outcome: OutcomeSlot
    private var timer: Scheduled<Void>?

    /// A handler that tunnels through `proxy` to `server`, failing `outcome` if the proxy does not answer within
    /// `timeout` seconds.
    init(proxy: ProxyURL, server: ServerURL, timeout: Double, outcome: OutcomeSlot) {
        self.machine = ProxyTunnelStateMachine(proxy: proxy, target: server.hostHeader)
        self.timeout = timeout
        self.outcome = outcome
    }

    func channelActive(context: ChannelHandlerContext) {
        let request = self.machine.channelActive()
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        self.timer = context.eventLoop.scheduleTask(in: .nanoseconds(Int64(self.timeout * 1e9))) {
            let (handler, context) = loopBound.value
            handler.perform(handler.machine.timedOut(after: handler.timeout), context: context)
        }
        context.writeAndFlush(self.wrapOutboundOut(context.channel.allocator.buffer(bytes: request)), promise: nil)
        // Not passed on yet: TLS and the upgrade request start when the tunnel is up.
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        let bytes = buffer.readBytes(length: buffer.readableBytes) ?? []
        switch self.machine.bytesReceived(bytes) {
        case .wait:
            break
        case .established(let leftover):
            self.timer?.cancel()
            context.fireChannelActive()
            if !leftover.isEmpty {
                context.fireChannelRead(self.wrapInboundOut(context.channel.allocator.buffer(bytes: leftover)))
                context.fireChannelReadComplete()
            }
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        case .fail(let code, let message):
            self.fail(XferError(code, message), context: context)
        case .forward:
            context.fireChannelRead(data)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.perform(self.machine.channelInactive(), context: context)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // Before the tunnel is up, an error here is the proxy connection's: the tunnel failed.
        switch self.machine.errorCaught(XferClient.describe(error)) {
        case .fail(let code, let message):
            self.fail(XferError(code, message), context: context)
        case .none:
            context.fireErrorCaught(error)
        }
    }

    private func perform(_ action: ProxyTunnelStateMachine.FailureAction, context: ChannelHandlerContext) {
        switch action {
        case .fail(let code, let message):
            self.fail(XferError(code, message), context: context)
        case .none:
            break
        }
    }

    private func fail(_ error: XferError, context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.outcome.complete(.failed(error, afterWelcome: false))
        context.close(promise: nil)
    }
}
