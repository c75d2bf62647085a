/// The server's view of one WebSocket connection after the HTTP upgrade, as a value.
///
/// It decides what each incoming message means; the channel handler around it performs the I/O each action
/// names. Frames are already reassembled and UTF-8-checked when they arrive here.
public struct ServerConnectionStateMachine: Sendable {
    /// How the client talks: a plain WebSocket client, or an `xfer` client that negotiated `xfer.v1`.
    public enum Mode: Sendable, Equatable {
        /// A browser, `websocat` or Python `websockets`: first text frame is the timezone, then texts.
        case plain
        /// An `xfer` client: first a binary `hello`, then texts and control messages.
        case xfer
        /// `xfer serve --echo`, for WebSocket conformance suites (Autobahn): no handshake, every message is sent
        /// back as it came, through the same frame handling as the other modes.
        case echo
    }

    /// What the client said about itself in the handshake.
    public struct Session: Sendable, Equatable {
        /// The validated timezone.
        public var timezone: String
        /// What the connection is for.
        public var role: ClientKind
        /// The listener name (`xfer listen --name`), if any.
        public var name: String?
        /// Where this connection's texts go: a listener name, or `nil` for the server's own stdout.
        public var relayTo: String?
        /// Whether this connection's texts go to every listener.
        public var relayToAll: Bool
        /// Where a reconnecting listener left off, if it asked to resume.
        public var resume: ResumePoint? = nil

        /// Where this connection's texts are routed, or nil when they go to the server's own stdout.
        public var relayTarget: RelayTarget? {
            if self.relayToAll { return .allListeners }
            return self.relayTo.map(RelayTarget.name)
        }
    }

    /// Where the connection stands.
    enum State: Sendable {
        /// Upgraded; waiting for the timezone (plain) or `hello` (xfer).
        case awaitingHandshake
        /// Handshake done; `lastID` is the number of text messages received so far.
        case open(Session, lastID: UInt64)
        /// Echo mode: every message goes back to the sender.
        case echoing
        /// We sent a close frame and wait for the peer's (RFC 6455 section 7.1.2).
        case closing
        /// Both close frames were exchanged, or the connection dropped.
        case closed
    }

    /// What to do with an incoming text frame.
    public enum TextAction: Sendable, Equatable {
        /// The handshake is complete: emit `connected` and, for xfer clients, send `welcome`.
        case connected(Session)
        /// Text message number `id`: emit or relay it, then send its status.
        case message(id: UInt64, session: Session)
        /// An upload message on an upload connection: hand it to the upload receiver.
        case upload(WireMessage)
        /// Echo mode: send the message back unchanged.
        case echo
        /// Send an `error` and close with the code for this error.
        case fail(XferError.Code, String)
        /// Nothing: the connection is closing and late frames are dropped (a race we live with).
        case ignore
    }

    /// What to do after a close frame arrived.
    public enum CloseAction: Sendable, Equatable {
        /// The peer started the close: answer with the same code, then close the socket (RFC 6455 section 5.5.1).
        case echoAndClose(code: UInt16?)
        /// We had started the close: this completes it; close the socket.
        case closeSocket
        /// Already closed: a race with the socket closing, nothing to do.
        case ignore
    }

    /// What to do with a binary message, before it is decoded.
    public enum BinaryAction: Sendable, Equatable {
        /// Decode it as a `WireMessage` and pass it to `controlReceived`.
        case decode
        /// Echo mode: send it back unchanged.
        case echo
        /// Send an `error` and close with the code for this error.
        case fail(XferError.Code, String)
        /// Nothing: the connection is closing.
        case ignore
    }

    private var state: State
    /// How the client talks.
    public let mode: Mode

    /// A machine for a connection just upgraded in `mode`.
    public init(mode: Mode) {
        self.mode = mode
        self.state = mode == .echo ? .echoing : .awaitingHandshake
    }

    /// Whether the handshake completed (or none is needed) and the connection is not closing.
    public var isOpen: Bool {
        switch self.state {
        case .open, .echoing: return true
        case .awaitingHandshake, .closing, .closed: return false
        }
    }

    /// A binary message arrived (reassembled); says whether to decode it.
    public func binaryReceived() -> BinaryAction {
        switch self.state {
        case .closing, .closed:
            return .ignore
        case .echoing:
            return .echo
        case .awaitingHandshake, .open:
            guard self.mode == .xfer else {
                // RFC 6455 section 7.4.1: 1003 for a kind of data the endpoint cannot accept.
                return .fail(
                    .unsupportedData,
                    "plain WebSocket clients send text frames only; binary frames need the xfer.v1 subprotocol"
                )
            }
            return .decode
        }
    }

    /// The session, once the handshake completed.
    public var session: Session? {
        if case .open(let session, _) = self.state { return session }
        return nil
    }

    /// A text frame arrived.
    public mutating func textReceived(_ text: String, isKnownZone: (String) -> Bool) -> TextAction {
        switch self.state {
        case .awaitingHandshake:
            guard self.mode == .plain else {
                return .fail(.protocolError, "an xfer.v1 client must send hello before any text")
            }
            do {
                let zone = try ClientTimezone.validate(text, isKnownZone: isKnownZone)
                let session = Session(timezone: zone, role: .plain, name: nil, relayTo: nil, relayToAll: false)
                self.state = .open(session, lastID: 0)
                return .connected(session)
            } catch {
                return .fail(error.code, error.message)
            }
        case .open(let session, let lastID):
            self.state = .open(session, lastID: lastID + 1)
            return .message(id: lastID + 1, session: session)
        case .echoing:
            return .echo
        case .closing, .closed:
            return .ignore
        }
    }

    /// A binary frame arrived and decoded to `message`.
    public mutating func controlReceived(_ message: WireMessage, isKnownZone: (String) -> Bool) -> TextAction {
        switch self.state {
        case .awaitingHandshake:
            guard self.mode == .xfer else {
                return .fail(.protocolError, "send your timezone as a text frame before anything else")
            }
            guard case .hello(let fields) = message else {
                return .fail(.protocolError, "the first message of xfer.v1 must be hello")
            }
            do {
                let hello = try Hello(fields: fields, isKnownZone: isKnownZone)
                let session = Session(
                    timezone: hello.timezone,
                    role: hello.role,
                    name: hello.name,
                    relayTo: hello.relayTo,
                    relayToAll: hello.relayToAll,
                    resume: hello.resume
                )
                self.state = .open(session, lastID: 0)
                return .connected(session)
            } catch {
                return .fail(error.code, error.message)
            }
        case .open(let session, _):
            if session.role == .upload {
                switch message {
                case .offer, .block, .finish: return .upload(message)
                default: break
                }
            }
            if case .error = message {
                // The client reports a failure before it closes; the close frame that follows ends the session.
                return .ignore
            }
            return .fail(.protocolError, "unexpected \(message.typeName) message from a client")
        case .echoing:
            return .echo
        case .closing, .closed:
            return .ignore
        }
    }

    /// We are sending a close frame.
    public mutating func closeSent() {
        switch self.state {
        case .awaitingHandshake, .open, .echoing:
            self.state = .closing
        case .closing, .closed:
            break
        }
    }

    /// A close frame arrived with `code` (nil when the frame had no body).
    public mutating func closeReceived(code: UInt16?) -> CloseAction {
        switch self.state {
        case .awaitingHandshake, .open, .echoing:
            self.state = .closed
            return .echoAndClose(code: code)
        case .closing:
            self.state = .closed
            return .closeSocket
        case .closed:
            return .ignore
        }
    }

    /// The socket closed.
    public mutating func channelInactive() {
        self.state = .closed
    }
}

extension WireMessage {
    /// The message's name in diagnostics and the protocol document.
    public var typeName: String {
        switch self {
        case .hello: return "hello"
        case .welcome: return "welcome"
        case .status: return "status"
        case .ack: return "ack"
        case .deliver: return "deliver"
        case .missed: return "missed"
        case .error: return "error"
        case .offer: return "offer"
        case .accept: return "accept"
        case .block: return "block"
        case .blockAck: return "block_ack"
        case .blockNack: return "block_nack"
        case .finish: return "finish"
        case .saved: return "saved"
        }
    }
}
