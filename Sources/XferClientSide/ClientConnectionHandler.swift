import NIOCore
import NIOSSL
import NIOWebSocket
import Synchronization
import XferEvents
import XferProtocol
import XferTransport

/// The client end of an upgraded `xfer.v1` connection: handshake, heart-beat, closing handshake; the work
/// itself is the role's.
public final class ClientConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = WebSocketFrame
    public typealias OutboundOut = WebSocketFrame

    private let configuration: ClientConfiguration
    private let role: ClientRole
    private let sink: EventSink
    private let outcome: OutcomeSlot
    private let heartbeat: HeartbeatTimer
    private var context: ChannelHandlerContext?
    private var connection: ClientConnection?
    private var welcomed = false
    private var pendingEvents: [Event] = []
    private var welcomeTimer: Scheduled<Void>?
    private var closeTimer: Scheduled<Void>?
    private var fragments: FragmentReassembler
    /// Set when we sent a close frame: the error we close with, or nil for a normal end.
    private var closing: (error: XferError?, sent: Bool)?
    /// The first failure learnt from the server or the network.
    private var failure: XferError?
    private var closeCode: UInt16?
    private var disconnectReason: String?

    init(configuration: ClientConfiguration, role: ClientRole, sink: EventSink, outcome: OutcomeSlot) {
        self.configuration = configuration
        self.role = role
        self.sink = sink
        self.outcome = outcome
        self.fragments = FragmentReassembler(maxMessageBytes: configuration.maxFrameSize)
        self.heartbeat = HeartbeatTimer(
            intervalSeconds: configuration.pingInterval,
            timeoutSeconds: configuration.pingTimeout
        )
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.connection = ClientConnection(context: context, handler: self)
        self.heartbeat.frameReceived()
        self.connection?.writeControl(.hello(self.configuration.hello.fields))
        context.flush()
        let loop = context.eventLoop.assumeIsolated()
        self.welcomeTimer = loop.scheduleTask(in: .nanoseconds(Int64(self.configuration.connectTimeout * 1e9))) {
            self.fail(
                XferError(
                    .handshakeTimeout,
                    "no welcome from \(self.configuration.server) within \(self.configuration.connectTimeout) s: is it an xfer server?"
                )
            )
        }
        self.heartbeat.start(
            on: context.eventLoop,
            ping: { payload in self.sendPing(payload) },
            timedOut: { silent in self.pingTimedOut(silent) }
        )
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.heartbeat.cancel()
        self.welcomeTimer?.cancel()
        self.closeTimer?.cancel()
        self.connection = nil
        self.context = nil
    }

    private func sendPing(_ payload: [UInt8]) {
        guard let context = self.context else { return }
        var buffer = context.channel.allocator.buffer(capacity: 8)
        buffer.writeBytes(payload)
        self.write(WebSocketFrame(fin: true, opcode: .ping, maskKey: .random(), data: buffer), flush: true)
    }

    private func pingTimedOut(_ silent: UInt64) {
        guard let context = self.context else { return }
        self.failure =
            self.failure
            ?? XferError(
                .timeout,
                "no frame from \(self.configuration.server) for \(Int(Double(silent) / 1e9)) s (ping timeout \(self.configuration.pingTimeout) s)"
            )
        self.disconnectReason = "timeout"
        context.close(promise: nil)
    }

    /// The handler next to the socket (or next to TLS, for `wss://`), through which pre-built frames are written.
    private var rawWriter: RawFrameWriter?

    func writeRaw(_ frame: ByteBuffer) {
        if self.rawWriter == nil, let context = self.context {
            let writer = RawFrameWriter()
            let operations = context.pipeline.syncOperations
            // Frames are plaintext: with TLS they must still pass through the TLS handler on their way out.
            if let tls = try? operations.handler(type: NIOSSLClientHandler.self) {
                try? operations.addHandler(writer, position: .after(tls))
            } else {
                try? operations.addHandler(writer, position: .first)
            }
            self.rawWriter = writer
        }
        self.rawWriter?.write(frame)
    }

    func write(_ frame: WebSocketFrame, flush: Bool) {
        guard let context = self.context else { return }
        if flush {
            context.writeAndFlush(self.wrapOutboundOut(frame), promise: nil)
        } else {
            context.write(self.wrapOutboundOut(frame), promise: nil)
        }
    }

    func appendEvent(_ event: Event) {
        self.pendingEvents.append(event)
        if self.pendingEvents.count >= 1024 { self.flushEvents() }
    }

    private func flushEvents() {
        if !self.pendingEvents.isEmpty {
            self.sink.emit(self.pendingEvents)
            self.pendingEvents.removeAll(keepingCapacity: true)
        }
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = self.unwrapInboundIn(data)
        self.heartbeat.frameReceived()
        if frame.rsv1 || frame.rsv2 || frame.rsv3 {
            // RFC 6455 section 5.2: a nonzero RSV bit without a negotiated extension fails the connection.
            return self.fail(
                XferError(.protocolError, "server sent a frame with RSV bits set, but no extension was negotiated")
            )
        }
        if frame.maskKey != nil {
            // RFC 6455 section 5.1: a client closes the connection on a masked frame from the server.
            return self.fail(XferError(.protocolError, "server sent a masked frame (RFC 6455 section 5.1)"))
        }
        switch frame.opcode {
        case .text, .binary, .continuation:
            switch self.fragments.receive(opcode: frame.opcode, fin: frame.fin, data: frame.unmaskedData) {
            case .message(let opcode, let data):
                self.messageReceived(opcode: opcode, data: data)
            case .incomplete:
                break
            case .protocolViolation(let message):
                self.fail(XferError(.protocolError, "server broke RFC 6455 section 5.4: \(message)"))
            case .tooLarge:
                self.fail(
                    XferError(
                        .messageTooLarge,
                        "server sent a message larger than \(self.configuration.maxFrameSize) bytes"
                    )
                )
            }
        case .ping:
            self.write(
                WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData),
                flush: false
            )
        case .pong:
            if let rtt = Heartbeat.roundTrip(pongPayload: frame.unmaskedData.readableBytesView, now: Monotonic.now()) {
                self.appendEvent(.ping(rttMs: Double(rtt) / 1e6, client: nil))
            }
        case .connectionClose:
            let code: UInt16?
            let reasonText: String
            switch ClosePayload.parse(frame.data.readableBytesView) {
            case .valid(let valid, let reason):
                code = valid
                reasonText = reason
            case .invalid(let errorCode, let message):
                // Answered with 1002 or 1007 instead of an echo (RFC 6455 section 7.4).
                self.failure = self.failure ?? XferError(errorCode, "server sent a bad close frame: \(message)")
                if let closing = self.closing, closing.sent {
                    context.close(promise: nil)
                    return
                }
                self.closing = (self.failure, true)
                var body = context.channel.allocator.buffer(capacity: 2)
                body.writeInteger(XferError.closeCode(for: errorCode))
                context.writeAndFlush(
                    self.wrapOutboundOut(
                        WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: body)
                    )
                ).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
                return
            }
            self.closeCode = code
            if let closing = self.closing, closing.sent {
                // Our close was answered (RFC 6455 section 7.1.2): the TCP connection may close now.
                context.close(promise: nil)
                return
            }
            if self.failure == nil {
                switch code {
                case 1000:
                    self.failure = XferError(.connectionLost, "server closed the connection before the work was done")
                case 1001:
                    self.failure = XferError(.shutdown, "server is shutting down; run the command again later")
                    self.disconnectReason = "shutdown"
                default:
                    let code = code ?? 1005
                    self.failure = XferError(
                        XferError.code(forClose: code),
                        "server closed the connection with code \(code)\(reasonText.isEmpty ? "" : ": \(reasonText)")"
                    )
                }
            }
            var body = context.channel.allocator.buffer(capacity: 2)
            if let code { body.writeInteger(code) }
            self.closing = (nil, true)
            context.writeAndFlush(
                self.wrapOutboundOut(
                    WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: body)
                )
            ).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        default:
            self.fail(XferError(.protocolError, "server sent unknown opcode \(frame.opcode)"))
        }
    }

    private func messageReceived(opcode: WebSocketOpcode, data: ByteBuffer) {
        guard let connection = self.connection else { return }
        if opcode == .text {
            let text = data.withUnsafeReadableBytes { String(validating: $0.bindMemory(to: UInt8.self), as: UTF8.self) }
            guard let text else {
                return self.fail(XferError(.invalidUTF8, "server sent a text frame that is not UTF-8"))
            }
            self.role.receivedText(text, connection: connection)
            return
        }
        let message: WireMessage
        do {
            message = try WireMessage.decode(data)
        } catch {
            return self.fail(error)
        }
        switch message {
        case .welcome(let fields):
            guard !self.welcomed else { return self.fail(XferError(.protocolError, "server sent welcome twice")) }
            self.welcomed = true
            self.welcomeTimer?.cancel()
            self.appendEvent(
                .connectedToServer(
                    server: self.configuration.server.description,
                    client: fields["client"].flatMap { Int($0) }
                )
            )
            self.role.started(connection: connection, welcome: fields)
        case .error(let code, let text):
            // Reported once, by the command, when the session ends.
            self.failure = self.failure ?? XferError(XferError.Code(rawValue: code), text)
        default:
            guard self.welcomed else {
                return self.fail(XferError(.protocolError, "server sent \(message.typeName) before welcome"))
            }
            self.role.received(message, connection: connection)
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        self.flushEvents()
        context.flush()
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let connection = self.connection, self.closing == nil {
            self.role.writable(connection: connection)
        }
        context.fireChannelWritabilityChanged()
    }

    /// Ends the session normally (nil) or with `error`.
    func finish(_ error: XferError?) {
        guard let context = self.context, self.closing == nil else { return }
        self.closing = (error, true)
        var body = context.channel.allocator.buffer(capacity: 2)
        if let error {
            self.failure = self.failure ?? error
            self.connection?.writeControl(.error(code: error.code.rawValue, message: error.message))
            body.writeInteger(XferError.closeCode(for: error.code))
        } else {
            body.writeInteger(UInt16(1000))
        }
        self.write(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: body), flush: true)
        self.flushEvents()
        self.closeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(2)) {
            self.context?.close(promise: nil)
        }
    }

    private func fail(_ error: XferError) {
        if self.closing == nil {
            self.finish(error)
        } else {
            self.failure = self.failure ?? error
        }
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        if self.failure == nil {
            if error is NIOWebSocketError {
                self.failure = XferError(.protocolError, "WebSocket protocol error from server: \(error)")
            } else {
                self.failure = XferError(.connectionLost, "connection to \(self.configuration.server) failed: \(error)")
            }
        }
        context.close(promise: nil)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        if let connection = self.connection { self.role.ended(connection: connection) }
        self.heartbeat.cancel()
        self.welcomeTimer?.cancel()
        self.closeTimer?.cancel()
        let result: ClientOutcome
        let reason: String
        if let closing = self.closing, closing.error == nil, self.failure == nil {
            result = .finished
            reason = "closed"
        } else {
            let error =
                self.failure
                ?? XferError(
                    .connectionLost,
                    "connection to \(self.configuration.server) dropped without a close frame"
                )
            result = .failed(error, afterWelcome: self.welcomed)
            reason =
                self.disconnectReason
                ?? (self.closeCode == nil
                    ? "error" : (self.closing?.error == nil && self.closeCode == 1000 ? "closed" : "error"))
        }
        self.appendEvent(.disconnected(reason: reason, code: self.closeCode.map(Int.init), client: nil))
        self.flushEvents()
        self.outcome.complete(result)
        context.fireChannelInactive()
    }
}
