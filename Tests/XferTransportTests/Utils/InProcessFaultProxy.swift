import NIOCore
import NIOPosix
import Synchronization

/// A TCP proxy on 127.0.0.1 inside the test process, for pairing a client and a server in one process with faults
/// in between: each accepted connection takes the next `Fault` from the list (later ones pass bytes untouched).
///
/// Offsets count the bytes the client sent on that connection (HTTP upgrade included).
final class InProcessFaultProxy: Sendable {
    /// What to do to one connection.
    struct Fault: Sendable {
        /// Flip every bit of the client's byte at this offset (a corrupted block: the server must nack it).
        var flipAt: Int?
        /// Close both sides once the client sent this many bytes (a cut connection: the client must resume).
        var cutAfter: Int?
    }

    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let faults: Mutex<[Fault]>
    private let listener: Mutex<Channel?> = Mutex(nil)
    /// Connections accepted so far.
    let connections = Atomic<Int>(0)

    init(faults: [Fault]) {
        self.faults = Mutex(faults)
    }

    /// Starts forwarding to `127.0.0.1:targetPort`; returns the proxy's own port.
    func start(targetPort: Int) async throws -> Int {
        let bootstrap = ServerBootstrap(group: self.group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { inbound in
                self.connections.add(1, ordering: .relaxed)
                let fault = self.faults.withLock { $0.isEmpty ? Fault() : $0.removeFirst() }
                let toServer = Forwarder(fault: fault)
                let toClient = Forwarder(fault: Fault())
                return ClientBootstrap(group: inbound.eventLoop)
                    .channelInitializer { outbound in
                        toClient.partner = inbound
                        return outbound.pipeline.addHandler(toClient)
                    }
                    .connect(host: "127.0.0.1", port: targetPort)
                    .flatMap { outbound in
                        toServer.partner = outbound
                        return inbound.pipeline.addHandler(toServer)
                    }
            }
        let channel = try await bootstrap.bind(host: "127.0.0.1", port: 0).get()
        self.listener.withLock { $0 = channel }
        return channel.localAddress!.port!
    }

    /// Stops listening and the proxy's event loop.
    func stop() async {
        let channel = self.listener.withLock { $0 }
        try? await channel?.close().get()
        try? await self.group.shutdownGracefully()
    }

    /// Forwards what one side sends to the other, applying a fault on the way.
    final class Forwarder: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer

        // Touched only on the connection's event loop (both channels of a pair share it).
        var partner: Channel?
        private let fault: Fault
        private var seen = 0

        init(fault: Fault) {
            self.fault = fault
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = self.unwrapInboundIn(data)
            let start = self.seen
            self.seen += buffer.readableBytes
            if let flip = self.fault.flipAt, flip >= start, flip < self.seen {
                let index = buffer.readerIndex + flip - start
                buffer.setInteger(~buffer.getInteger(at: index, as: UInt8.self)!, at: index)
            }
            if let cut = self.fault.cutAfter, self.seen >= cut {
                let keep = cut - start
                if keep > 0, let slice = buffer.getSlice(at: buffer.readerIndex, length: keep) {
                    self.partner?.writeAndFlush(slice, promise: nil)
                }
                self.partner?.close(promise: nil)
                context.close(promise: nil)
                return
            }
            self.partner?.writeAndFlush(buffer, promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            self.partner?.close(promise: nil)
        }

        func errorCaught(context: ChannelHandlerContext, error: Error) {
            context.close(promise: nil)
        }
    }
}
