import NIOCore

/// Everything `xfer serve` can be told, with the defaults documented in xfer(1).
public struct ServerConfiguration: Sendable {
    /// Address to bind; `127.0.0.1` by default so that a server is not exposed by accident.
    public var host: String
    /// Port to bind; 0 picks a free one, reported in the `listening` event.
    public var port: Int
    /// Directory where uploads are saved (absolute path).
    public var directory: String
    /// Token that clients must present; nil lets everyone in.
    public var token: String?
    /// Seconds between our pings to each client.
    public var pingInterval: Double
    /// Seconds without any frame from a client after which it is considered gone.
    public var pingTimeout: Double
    /// Seconds a connection may take from TCP accept to a valid timezone (slow clients cannot hold sockets).
    public var handshakeTimeout: Double
    /// Most connections at once; more get HTTP 503. 10,000 fits the 20,000 open files allowed per process here.
    public var maxConnections: Int
    /// Largest text message in bytes (UTF-8); larger ones close the connection with 1009.
    public var maxTextBytes: Int
    /// Largest upload accepted, in bytes; 1 TiB by default.
    public var maxFileSize: UInt64
    /// Seconds a partial upload is kept for a resume after its last block; 7 days by default.
    public var partialTTL: Double
    /// Event loop threads; defaults to the number of cores.
    public var threads: Int
    /// Certificate and key for `wss://`; nil serves plain `ws://`.
    public var tls: ServerTLSSettings?
    /// Most TCP connections at once from one client address, counted from accept (idle and half-done upgrades
    /// included); more get HTTP 429 at once. 0 (the default): no limit, because behind a balancer every client has
    /// its address and one load host must be able to hold the 10,000 connections `--max-connections` allows.
    public var maxConnectionsPerAddress: Int
    /// Most bytes of routed texts queued on one connection and not yet taken by its socket; a connection that
    /// passes it is closed as a slow consumer (1013, `slow_consumer`). 8 MiB by default: room for bursts to a
    /// listener that reads, while 100 stalled connections cost under 1 GiB.
    public var maxQueuedBytes: Int
    /// Most routed texts queued on one connection (each costs a frame's overhead besides its bytes).
    public var maxQueuedTexts: Int
    /// Echo every message back instead of serving (`--echo`, for WebSocket conformance suites such as Autobahn).
    public var echo: Bool

    /// A configuration with the documented defaults.
    public init(
        host: String = "127.0.0.1",
        port: Int = 8000,
        directory: String = ".",
        token: String? = nil,
        pingInterval: Double = 20,
        pingTimeout: Double = 60,
        handshakeTimeout: Double = 10,
        maxConnections: Int = 10_000,
        maxTextBytes: Int = 1 << 20,
        maxFileSize: UInt64 = 1 << 40,
        partialTTL: Double = 7 * 86400,
        threads: Int = System.coreCount,
        tls: ServerTLSSettings? = nil,
        maxConnectionsPerAddress: Int = 0,
        maxQueuedBytes: Int = 8 << 20,
        maxQueuedTexts: Int = 10_000,
        echo: Bool = false
    ) {
        self.host = host
        self.port = port
        self.directory = directory
        self.token = token
        self.pingInterval = pingInterval
        self.pingTimeout = pingTimeout
        self.handshakeTimeout = handshakeTimeout
        self.maxConnections = maxConnections
        self.maxTextBytes = maxTextBytes
        self.maxFileSize = maxFileSize
        self.partialTTL = partialTTL
        self.threads = threads
        self.tls = tls
        self.maxConnectionsPerAddress = maxConnectionsPerAddress
        self.maxQueuedBytes = maxQueuedBytes
        self.maxQueuedTexts = maxQueuedTexts
        self.echo = echo
    }

    /// The largest WebSocket frame the decoder accepts: a whole text message plus header room.
    var maxFrameSize: Int { max(self.maxTextBytes, UploadReceiver.maxBlockSize) + 64 }
}
