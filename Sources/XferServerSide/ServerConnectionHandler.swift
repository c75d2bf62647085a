import NIOCore
import NIOWebSocket
import XferEvents
import XferProtocol
import XferTransport

/// The server end of one upgraded WebSocket connection: a thin shell around `ServerConnectionStateMachine`.
///
/// It reassembles fragmented messages (RFC 6455 section 5.4), answers pings, sends its own pings, batches the
/// events and statuses of one read burst (events are written to stdout before the statuses go out, so a status
/// always follows its `text` event), and runs the closing handshake.
final class ServerConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    /// Frames from `ClientFrameDecoder`, already unmasked.
    typealias InboundIn = ClientFrame
    typealias OutboundOut = WebSocketFrame

    private var machine: ServerConnectionStateMachine
    private let server: ServerContext
    private let clientID: Int
    private let peer: String
    private let handshakeDeadline: NIODeadline
    private let heartbeat: HeartbeatTimer
    private var context: ChannelHandlerContext?
    private var handshakeTimer: Scheduled<Void>?
    private var closeTimer: Scheduled<Void>?
    private var fragments: FragmentReassembler
    private var pendingEvents: [Event] = []
    private var pendingAck: (first: UInt64, last: UInt64)?
    /// Keeps statuses in message order while relayed messages wait for their routing answer.
    private var statuses = StatusSequencer()
    private var needsFlush = false
    private var registered = false
    private var endReason: (reason: String, code: UInt16?, message: String?)?
    /// Texts routed to this connection, counted until its socket takes them (`--max-queued-bytes/-texts`).
    private let outbound: OutboundQueueBox
    /// Reading is paused while the upload's disk queue is full.
    private var pausedByUpload = false
    /// Reading is paused while the socket does not take what we write (a peer that does not read): a flood of
    /// messages whose statuses it never reads cannot grow the server.
    private var pausedByWrites = false

    init(
        mode: ServerConnectionStateMachine.Mode,
        server: ServerContext,
        clientID: Int,
        peer: String,
        handshakeDeadline: NIODeadline
    ) {
        self.machine = ServerConnectionStateMachine(mode: mode)
        self.server = server
        self.clientID = clientID
        self.peer = peer
        self.handshakeDeadline = handshakeDeadline
        self.fragments = FragmentReassembler(maxMessageBytes: server.configuration.maxTextBytes)
        self.outbound = OutboundQueueBox(
            maxBytes: server.configuration.maxQueuedBytes,
            maxTexts: server.configuration.maxQueuedTexts
        )
        self.heartbeat = HeartbeatTimer(
            intervalSeconds: server.configuration.pingInterval,
            timeoutSeconds: server.configuration.pingTimeout
        )
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let loop = context.eventLoop.assumeIsolated()
        self.handshakeTimer = loop.scheduleTask(deadline: self.handshakeDeadline) {
            self.handshakeTimedOut()
        }
        self.heartbeat.start(
            on: context.eventLoop,
            ping: { payload in self.sendPing(payload) },
            timedOut: { silent in self.pingTimedOut(silent) }
        )
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.cancelTimers()
        self.context = nil
    }

    private func cancelTimers() {
        self.heartbeat.cancel()
        self.handshakeTimer?.cancel()
        self.closeTimer?.cancel()
    }

    private func sendPing(_ payload: [UInt8]) {
        guard let context = self.context else { return }
        var buffer = context.channel.allocator.buffer(capacity: 8)
        buffer.writeBytes(payload)
        context.writeAndFlush(
            self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: buffer)),
            promise: nil
        )
    }

    private func pingTimedOut(_ silent: UInt64) {
        guard let context = self.context else { return }
        let seconds = Double(silent) / 1e9
        self.endReason = (
            "timeout", nil, "no frame from client for \(String(format: "%.1f", seconds)) s (ping timeout)"
        )
        // A peer that stopped reading cannot take part in a closing handshake: drop the socket at once.
        context.close(promise: nil)
    }

    private func handshakeTimedOut() {
        guard !self.machine.isOpen else { return }
        let what = self.machine.mode == .xfer ? "hello" : "timezone (the first text frame)"
        self.fail(.handshakeTimeout, "no \(what) within \(self.server.configuration.handshakeTimeout) s of connecting")
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.inRead = true
        let frame = self.unwrapInboundIn(data)
        self.heartbeat.frameReceived()
        guard !self.machineClosing || frame.opcode == .connectionClose else {
            // Closing: only the peer's close frame matters now (RFC 6455 section 7.1.1).
            return
        }
        if frame.rsv1 || frame.rsv2 || frame.rsv3 {
            // RFC 6455 section 5.2: a nonzero RSV bit without a negotiated extension fails the connection.
            return self.fail(
                .protocolError,
                "frame with RSV bits set, but no extension was negotiated (RFC 6455 section 5.2)"
            )
        }
        if !frame.masked {
            // RFC 6455 section 5.1: a server closes the connection on an unmasked frame from a client.
            return self.fail(.protocolError, "client frames must be masked (RFC 6455 section 5.1)")
        }
        switch frame.opcode {
        case .text, .binary, .continuation:
            switch self.fragments.receive(opcode: frame.opcode, fin: frame.fin, data: frame.data) {
            case .message(let opcode, let data):
                self.messageReceived(opcode: opcode, data: data)
            case .incomplete:
                break
            case .protocolViolation(let message):
                self.fail(.protocolError, message)
            case .tooLarge:
                self.fail(
                    .messageTooLarge,
                    "message is larger than the server's limit of \(self.server.configuration.maxTextBytes) bytes"
                )
            }
        case .ping:
            // RFC 6455 section 5.5.2: answer with a pong carrying the same application data.
            let pong = WebSocketFrame(fin: true, opcode: .pong, data: frame.data)
            context.write(self.wrapOutboundOut(pong), promise: nil)
            self.needsFlush = true
        case .pong:
            if let rtt = Heartbeat.roundTrip(pongPayload: frame.data.readableBytesView, now: Monotonic.now()) {
                self.appendEvent(.ping(rttMs: Double(rtt) / 1e6, client: self.clientID))
            }
        case .connectionClose:
            self.closeReceived(frame)
        default:
            self.fail(.protocolError, "unknown WebSocket opcode \(frame.opcode)")
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.inRead = false
        self.flushPending()
        if !context.channel.isWritable && !self.pausedByWrites {
            self.pausedByWrites = true
            self.updateReading(context: context)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable && self.pausedByWrites {
            self.pausedByWrites = false
            self.updateReading(context: context)
        }
        context.fireChannelWritabilityChanged()
    }

    /// Reads while neither the upload's disk queue nor the socket's outbound buffer is full.
    private func updateReading(context: ChannelHandlerContext) {
        let reading = !self.pausedByUpload && !self.pausedByWrites
        try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: reading)
        if reading { context.read() }
    }

    private func messageReceived(opcode: WebSocketOpcode, data: ByteBuffer) {
        let isKnownZone = self.server.isKnownZone
        let action: ServerConnectionStateMachine.TextAction
        if opcode == .text {
            guard data.readableBytes <= self.server.configuration.maxTextBytes else {
                return self.fail(
                    .messageTooLarge,
                    "text message of \(data.readableBytes) bytes exceeds the server's limit of \(self.server.configuration.maxTextBytes) bytes"
                )
            }
            let text = data.withUnsafeReadableBytes { String(validating: $0.bindMemory(to: UInt8.self), as: UTF8.self) }
            guard let text else {
                // RFC 6455 section 8.1: a text frame that is not valid UTF-8 fails the connection with 1007.
                return self.fail(.invalidUTF8, "text frame is not valid UTF-8")
            }
            action = self.machine.textReceived(text, isKnownZone: isKnownZone)
            self.perform(action, text: text, frameBuffer: data)
        } else {
            switch self.machine.binaryReceived() {
            case .decode:
                break
            case .echo:
                return self.echo(opcode: .binary, data: data)
            case .fail(let code, let message):
                return self.fail(code, message)
            case .ignore:
                return
            }
            let message: WireMessage
            do {
                message = try WireMessage.decode(data)
            } catch {
                return self.fail(error.code, error.message)
            }
            action = self.machine.controlReceived(message, isKnownZone: isKnownZone)
            self.perform(action, text: nil, frameBuffer: data)
        }
    }

    /// `frameBuffer` is the unmasked buffer of a binary message (a block's payload is a slice of it).
    private func perform(
        _ action: ServerConnectionStateMachine.TextAction,
        text: String?,
        frameBuffer: ByteBuffer? = nil
    ) {
        guard let context = self.context else { return }
        switch action {
        case .connected(let session):
            self.handshakeTimer?.cancel()
            if self.machine.mode == .xfer {
                let welcome = WireMessage.welcome([
                    "client": String(self.clientID),
                    "server": XferVersion.current,
                    "max_text": String(self.server.configuration.maxTextBytes),
                    "ping_interval": String(self.server.configuration.pingInterval),
                    "epoch": self.server.router.epoch,
                ])
                self.writeControl(welcome)
            }
            // After `welcome`: registering writes texts held for this listener name, which must follow it.
            self.server.registry.register(
                id: self.clientID,
                channel: context.channel,
                peer: self.peer,
                session: session
            )
            self.server.router.joined(
                client: self.clientID,
                kind: session.role,
                name: session.name,
                resume: session.resume,
                inbox: ChannelInbox(channel: context.channel, plain: self.machine.mode == .plain, queue: self.outbound)
            )
            self.registered = true
            self.appendEvent(
                .clientConnected(
                    client: self.clientID,
                    peer: self.peer,
                    timezone: session.timezone,
                    name: session.name,
                    role: session.role.rawValue,
                    subprotocol: self.machine.mode == .xfer ? WireMessage.subprotocol : nil
                )
            )
        case .message(let id, let session):
            let text = text ?? ""
            guard let target = session.relayTarget else {
                self.appendEvent(.textReceived(client: self.clientID, id: id, text: text, name: session.name, to: nil))
                if case .ok(let id) = self.statuses.emitted(id: id) { self.queueOK(id) }
                return
            }
            self.appendEvent(
                .textReceived(
                    client: self.clientID,
                    id: id,
                    text: text,
                    name: session.name,
                    to: session.relayToAll ? "*" : session.relayTo
                )
            )
            // The text's event reaches the sink before the router can answer: its status never precedes it.
            self.flushPending()
            self.statuses.relayed(id: id)
            let from = session.name ?? "client-\(self.clientID)"
            let name = session.relayTo ?? "*"
            let holdSeconds = self.server.router.holdSeconds
            // A router may answer on another thread: the answer is handled on this connection's loop.
            self.server.router.route(text, from: from, to: target, on: context.eventLoop)
                .hop(to: context.eventLoop).assumeIsolated()
                .whenComplete { result in
                    let status: WireMessage.Status
                    switch result {
                    case .success(let routed?):
                        status = .init(
                            id: id,
                            ok: true,
                            relayed: true,
                            delivered: UInt32(routed.delivered),
                            held: UInt32(routed.held)
                        )
                    case .failure(let error as XferError):
                        // The router said why (a bus that is down: `cluster_unavailable`): nothing was committed.
                        status = .init(
                            id: id,
                            ok: false,
                            relayed: true,
                            code: error.code.rawValue,
                            reason: error.message
                        )
                    case .failure(let error):
                        // The router could not route it: not the sender's fault, and not "no listener".
                        status = .init(
                            id: id,
                            ok: false,
                            relayed: true,
                            code: XferError.Code.internalError.rawValue,
                            reason: "the server could not route this text (\(error)); send it again"
                        )
                    case .success(nil):
                        status = .init(
                            id: id,
                            ok: false,
                            relayed: true,
                            code: XferError.Code.noListener.rawValue,
                            reason:
                                "no listener named \"\(name)\" has connected within the last \(Int(holdSeconds)) s: start `xfer listen --name \(name)` first"
                        )
                    }
                    self.appendEvent(
                        .relayed(
                            client: self.clientID,
                            id: id,
                            to: name,
                            delivered: Int(status.delivered),
                            held: Int(status.held),
                            code: status.ok ? nil : status.code
                        )
                    )
                    self.routed(status)
                }
        case .upload(let message):
            self.uploadReceiver(context: context).received(message, frameBuffer: frameBuffer)
        case .echo:
            if let frameBuffer { self.echo(opcode: text == nil ? .binary : .text, data: frameBuffer) }
        case .fail(let code, let message):
            self.fail(code, message)
        case .ignore:
            break
        }
    }

    private var upload: UploadReceiver?

    private func uploadReceiver(context: ChannelHandlerContext) -> UploadReceiver {
        if let upload = self.upload { return upload }
        let channel = context.channel
        let upload = UploadReceiver(
            server: self.server,
            clientID: self.clientID,
            loop: context.eventLoop,
            send: { [unowned self] message in
                self.writeControl(message)
                self.context?.flush()
            },
            fail: { [unowned self] code, message in self.fail(code, message) },
            closeChannel: { channel.pipeline.fireUserInboundEventTriggered(UploadSupersededEvent()) },
            emit: { [unowned self] event in
                self.appendEvent(event)
                if self.pendingEvents.count > 0 && !self.inRead { self.flushPending() }
            },
            setReading: { [unowned self] reading in
                self.pausedByUpload = !reading
                if let context = self.context { self.updateReading(context: context) }
            }
        )
        self.upload = upload
        return upload
    }

    private var inRead = false

    /// Echo mode: sends a message back as one frame of the same kind.
    private func echo(opcode: WebSocketOpcode, data: ByteBuffer) {
        guard let context = self.context else { return }
        context.write(self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: opcode, data: data)), promise: nil)
        self.needsFlush = true
    }

    private func queueOK(_ id: UInt64) {
        if self.machine.mode == .plain {
            self.sendStatus(.init(id: id, ok: true))
        } else if let run = self.pendingAck, run.last + 1 == id {
            self.pendingAck = (run.first, id)
        } else {
            self.flushAckRun()
            self.pendingAck = (id, id)
        }
        if self.pendingEvents.count > 1024 {
            self.flushPending()
        }
    }

    private func sendStatus(_ status: WireMessage.Status) {
        guard let context = self.context else { return }
        if self.machine.mode == .xfer {
            self.writeControl(.status(status))
            return
        }
        // Plain clients get a JSON object per message (SPEC.md: "a JSON text frame with at least ok").
        self.writePlain(.status(status), context: context)
    }

    /// Writes a JSON text frame to a plain client.
    private func writePlain(_ frame: PlainClientFrame, context: ChannelHandlerContext) {
        let json = frame.json
        var buffer = context.channel.allocator.buffer(capacity: json.count)
        buffer.writeBytes(json)
        context.write(self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: buffer)), promise: nil)
        self.needsFlush = true
    }

    private func writeControl(_ message: WireMessage) {
        guard let context = self.context else { return }
        var buffer = context.channel.allocator.buffer(capacity: 32)
        message.encode(into: &buffer)
        context.write(self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .binary, data: buffer)), promise: nil)
        self.needsFlush = true
    }

    private func appendEvent(_ event: Event) {
        self.pendingEvents.append(event)
    }

    /// A relayed message's routing answer came: every status no longer behind an unanswered one goes out, in
    /// message order.
    private func routed(_ status: WireMessage.Status) {
        for release in self.statuses.routed(status) {
            switch release {
            case .ok(let id):
                self.queueOK(id)
            case .status(let status):
                // Statuses go out in id order: write the pending run before this individual status.
                self.flushPending()
                self.sendStatus(status)
            }
        }
        self.flushUnlessReading()
    }

    private func flushUnlessReading() {
        if !self.inRead { self.flushPending() }
    }

    private func flushAckRun() {
        if let run = self.pendingAck {
            self.pendingAck = nil
            self.writeControl(.ack(first: run.first, last: run.last))
        }
    }

    /// Writes this burst's events to stdout, then its statuses to the socket: a status never precedes its event.
    private func flushPending() {
        if !self.pendingEvents.isEmpty {
            self.server.sink.emit(self.pendingEvents)
            self.pendingEvents.removeAll(keepingCapacity: true)
        }
        self.flushAckRun()
        if self.needsFlush, let context = self.context {
            self.needsFlush = false
            context.flush()
        }
    }

    // MARK: Closing

    private func closeReceived(_ frame: ClientFrame) {
        guard let context = self.context else { return }
        let code: UInt16?
        switch ClosePayload.parse(frame.data.readableBytesView) {
        case .valid(let valid, _):
            code = valid
        case .invalid(let errorCode, let message):
            // A malformed close is answered with 1002 or 1007 instead of an echo, and the socket closes at once.
            let closeCode = XferError.closeCode(for: errorCode)
            if case .echoAndClose = self.machine.closeReceived(code: nil) {
                self.endReason = self.endReason ?? ("error", closeCode, message)
                self.appendEvent(.error(code: errorCode.rawValue, message: message, client: self.clientID))
                var body = context.channel.allocator.buffer(capacity: 2)
                body.writeInteger(closeCode)
                self.flushPending()
                context.writeAndFlush(
                    self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: body))
                ).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            } else {
                context.close(promise: nil)
            }
            return
        }
        switch self.machine.closeReceived(code: code) {
        case .echoAndClose(let code):
            if self.endReason == nil {
                self.endReason = ("closed", code, nil)
            }
            // RFC 6455 section 5.5.1: echo the status code, then close the TCP connection.
            var body = context.channel.allocator.buffer(capacity: 2)
            if let code { body.writeInteger(code) }
            self.flushPending()
            context.writeAndFlush(self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: body)))
                .assumeIsolated().whenComplete { _ in
                    context.close(promise: nil)
                }
        case .closeSocket:
            context.close(promise: nil)
        case .ignore:
            break
        }
    }

    /// Sends an `error` (a JSON status for plain clients), then a close frame with the code for `code`.
    func fail(_ code: XferError.Code, _ message: String) {
        let closeCode = XferError.closeCode(for: code)
        self.startClose(code: closeCode, reason: "error", errorCode: code, message: message)
    }

    /// Starts the closing handshake with `code`; the socket closes when the peer answers or after 2 s.
    func startClose(code closeCode: UInt16, reason: String, errorCode: XferError.Code?, message: String?) {
        guard let context = self.context, self.machine.isOpen || !self.machineClosing else { return }
        self.machineClosing = true
        if let errorCode, let message {
            self.appendEvent(.error(code: errorCode.rawValue, message: message, client: self.clientID))
            switch self.machine.mode {
            case .xfer:
                self.writeControl(.error(code: errorCode.rawValue, message: message))
            case .plain:
                self.writePlain(.error(code: errorCode.rawValue, message: message), context: context)
            case .echo:
                // An echo peer gets nothing but its own messages back: the close frame says it all.
                break
            }
        }
        if self.endReason == nil {
            self.endReason = (reason, closeCode, message)
        }
        self.machine.closeSent()
        var body = context.channel.allocator.buffer(capacity: 2 + 123)
        body.writeInteger(closeCode)
        // RFC 6455 section 5.5: a control frame's payload is at most 125 bytes.
        body.writeString(String(decoding: (message ?? "").utf8.prefix(100), as: UTF8.self))
        context.write(
            self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: body)),
            promise: nil
        )
        self.flushPending()
        context.flush()
        self.closeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(2)) {
            self.context?.close(promise: nil)
        }
    }

    private var machineClosing = false

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let slow = event as? SlowConsumerEvent {
            self.fail(
                .slowConsumer,
                "this connection did not read its texts: \(slow.queuedTexts) texts (\(slow.queuedBytes) bytes) were waiting, the limit is \(self.server.configuration.maxQueuedTexts) texts or \(self.server.configuration.maxQueuedBytes) bytes; reconnect (a named listener gets the held texts)"
            )
        } else if let failure = event as? ConnectionFailEvent {
            self.fail(failure.error.code, failure.error.message)
        } else if event is UploadSupersededEvent {
            self.fail(.superseded, "a newer connection took this upload over (the same upload runs elsewhere)")
        } else if event is ServerShutdownEvent {
            self.startClose(code: 1001, reason: "shutdown", errorCode: nil, message: "server shutting down")
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let wsError = error as? NIOWebSocketError {
            // WebSocketProtocolErrorHandler has already sent the close frame (RFC 6455 section 7.1.7).
            let code: UInt16 = wsError == .invalidFrameLength ? 1009 : 1002
            let errorCode: XferError.Code = code == 1009 ? .messageTooLarge : .protocolError
            let message =
                code == 1009
                ? "frame larger than the server's limit of \(self.server.configuration.maxFrameSize) bytes"
                : "WebSocket protocol error: \(wsError)"
            if self.endReason == nil {
                self.endReason = ("error", code, message)
                self.appendEvent(.error(code: errorCode.rawValue, message: message, client: self.clientID))
            }
        } else if self.endReason == nil {
            self.endReason = ("error", nil, "\(error)")
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.cancelTimers()
        self.upload?.connectionClosed()
        self.machine.channelInactive()
        let end = self.endReason ?? ("error", nil, "connection dropped without a close frame")
        if self.registered {
            self.server.router.left(client: self.clientID)
            self.server.registry.unregister(id: self.clientID)
        } else {
            self.server.registry.releaseSlot()
        }
        if self.registered || self.endReason != nil {
            self.appendEvent(
                .disconnected(
                    reason: end.reason,
                    code: end.code.map(Int.init),
                    client: self.clientID,
                    message: end.message
                )
            )
        }
        self.flushPending()
        context.fireChannelInactive()
    }
}

/// Sent down every connection's pipeline when the server shuts down: close with 1001 (going away).
struct ServerShutdownEvent: Sendable {}

/// Sent down an upload connection's pipeline when a newer connection takes its upload over.
struct UploadSupersededEvent: Sendable {}
