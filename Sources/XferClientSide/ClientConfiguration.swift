import XferProtocol

/// Everything an `xfer` client needs to connect, with the defaults documented in xfer(1).
public struct ClientConfiguration: Sendable {
    /// The server to connect to.
    public var server: ServerURL
    /// Token presented as `Authorization: Bearer`; nil sends none.
    public var token: String?
    /// The timezone sent in `hello` (the machine's zone unless `--timezone` says otherwise).
    public var timezone: String
    /// What the connection is for: `send`, `listen` or `upload`.
    public var role: ClientKind
    /// Listener name (`listen --name`), or nil.
    public var name: String?
    /// Where a listener resumes (`listen --since`, or the last `seq` it printed before a reconnect), or nil.
    public var resume: ResumePoint?
    /// Relay target for `send --to`, or nil.
    public var relayTo: String?
    /// Whether `send --all` relays to every listener.
    public var relayToAll: Bool
    /// Seconds between our pings.
    public var pingInterval: Double
    /// Seconds of silence from the server after which the connection is considered lost.
    public var pingTimeout: Double
    /// Seconds allowed for TCP connect plus the WebSocket and xfer handshakes.
    public var connectTimeout: Double
    /// Largest frame accepted from the server.
    public var maxFrameSize: Int
    /// How a `wss://` server is verified (ignored for `ws://`).
    public var tls: ClientTLSSettings
    /// The HTTP proxy to tunnel through (`CONNECT`), or nil to connect directly (see `ProxyChoice`).
    public var proxy: ProxyURL?

    /// A configuration with the documented defaults.
    public init(
        server: ServerURL,
        token: String? = nil,
        timezone: String = "UTC",
        role: ClientKind = .send,
        name: String? = nil,
        relayTo: String? = nil,
        relayToAll: Bool = false,
        pingInterval: Double = 20,
        pingTimeout: Double = 60,
        connectTimeout: Double = 10,
        maxFrameSize: Int = 16 << 20,
        tls: ClientTLSSettings = ClientTLSSettings(),
        proxy: ProxyURL? = nil
    ) {
        self.server = server
        self.token = token
        self.timezone = timezone
        self.role = role
        self.name = name
        self.relayTo = relayTo
        self.relayToAll = relayToAll
        self.pingInterval = pingInterval
        self.pingTimeout = pingTimeout
        self.connectTimeout = connectTimeout
        self.maxFrameSize = maxFrameSize
        self.tls = tls
        self.proxy = proxy
    }

    /// The `hello` this configuration opens its sessions with.
    var hello: Hello {
        Hello(
            timezone: self.timezone,
            role: self.role,
            name: self.name,
            relayTo: self.relayTo,
            relayToAll: self.relayToAll,
            client: "xfer/\(XferVersion.current)",
            resume: self.resume
        )
    }
}
