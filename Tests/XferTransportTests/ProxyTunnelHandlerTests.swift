import NIOCore
import NIOEmbedded
import Testing
import XferProtocol

@testable import XferClientSide

/// `ProxyTunnelHandler` on an `EmbeddedChannel`: what comes after it sees the channel active only once the
/// tunnel is up, and a refusal fails the session with `proxy_failed`.
@Suite struct ProxyTunnelHandlerTests {
    /// Records what reaches the rest of the pipeline (an `EmbeddedChannel` runs on the test's thread).
    final class RecordingInboundHandler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        var activations = 0
        var received: [UInt8] = []

        func channelActive(context: ChannelHandlerContext) {
            self.activations += 1
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = self.unwrapInboundIn(data)
            let bytes = buffer.readBytes(length: buffer.readableBytes) ?? []
            self.received += bytes
        }
    }

    static func pipeline() throws -> (EmbeddedChannel, RecordingInboundHandler, OutcomeSlot) {
        let channel = EmbeddedChannel()
        let outcome = OutcomeSlot(promise: channel.eventLoop.makePromise(of: ClientOutcome.self))
        let recorder = RecordingInboundHandler()
        let handler = ProxyTunnelHandler(
            proxy: try ProxyURL(parsing: "http://u:p@proxy:3128", source: "--proxy"),
            server: try ServerURL(parsing: "wss://files.example.com"),
            timeout: 10,
            outcome: outcome
        )
        try channel.pipeline.syncOperations.addHandlers([handler, recorder])
        return (channel, recorder, outcome)
    }

    @Test func restOfPipelineStartsOnlyAfterTheProxyAnswers() throws {
        let (channel, recorder, outcome) = try Self.pipeline()
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 3128)).wait()
        var request = try #require(try channel.readOutbound(as: ByteBuffer.self))
        let text = request.readString(length: request.readableBytes) ?? ""
        #expect(text.hasPrefix("CONNECT files.example.com:443 HTTP/1.1\r\n"))
        #expect(text.contains("Proxy-Authorization: Basic dTpw\r\n"))
        #expect(recorder.activations == 0)

        try channel.writeInbound(ByteBuffer(string: "HTTP/1.1 200 Connection established\r\n"))
        #expect(recorder.activations == 0)
        try channel.writeInbound(ByteBuffer(string: "\r\nfirst bytes"))
        #expect(recorder.activations == 1)
        #expect(recorder.received == Array("first bytes".utf8))
        // The handler has left the pipeline: later bytes go straight through.
        #expect(throws: (any Error).self) { try channel.pipeline.syncOperations.handler(type: ProxyTunnelHandler.self) }
        try channel.writeInbound(ByteBuffer(string: "!"))
        #expect(recorder.received == Array("first bytes!".utf8))
        _ = try channel.finish()
        // The tunnel did not decide the session: whatever runs inside it does (a promise must not leak).
        outcome.complete(.finished)
        guard case .finished = try outcome.futureResult.wait() else {
            Issue.record("the tunnel completed the session")
            return
        }
    }

    @Test func refusalFailsTheSessionWithProxyFailedAndCloses() throws {
        let (channel, recorder, outcome) = try Self.pipeline()
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 3128)).wait()
        _ = try channel.readOutbound(as: ByteBuffer.self)
        try channel.writeInbound(ByteBuffer(string: "HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"))
        guard case .failed(let error, afterWelcome: false) = try outcome.futureResult.wait() else {
            Issue.record("the session did not fail")
            return
        }
        #expect(error.code == .proxyFailed)
        #expect(error.message.contains("http://proxy:3128 refused CONNECT files.example.com:443"))
        #expect(recorder.activations == 0)
        #expect(!channel.isActive)
    }
}
