import ArgumentParser
import Dispatch
import Foundation
import XferCluster
import XferEvents
import XferProtocol
import XferServerSide

/// `xfer serve`: accept clients, print their events, take commands on stdin.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Accept clients over WebSocket and print every event as a JSON line.",
        discussion: """
            Plain WebSocket clients send their timezone as the first text frame, then one text message per frame, \
            and get a JSON status ({"ok":true,"id":N}) for each; texts sent to them arrive as JSON \
            ({"from":"server","seq":N,"text":"..."}). Commands on stdin, one JSON object per line: \
            {"cmd":"send","to":"NAME or client id","text":"..."}, {"cmd":"broadcast","text":"..."}, {"cmd":"clients"}. \
            SIGINT or SIGTERM closes every client with 1001 and exits 0. \
            Under systemd (Type=notify) it sends READY=1 to NOTIFY_SOCKET once it listens: see examples/xfer.service \
            and "Run as a systemd service" in README.md. \
            On the same port: GET /health, GET /metrics (Prometheus) and GET / (a browser page to send, \
            receive and upload); see "Metrics" and "Browser page" in xfer(1) and the README.
            """
    )

    @Option(
        name: .long,
        help: ArgumentHelp("Address to listen on; 0.0.0.0 or :: for all interfaces.", valueName: "host")
    )
    var host: String = "127.0.0.1"

    @Option(
        name: .long,
        help: ArgumentHelp("Port to listen on; 0 picks a free port (see the listening event).", valueName: "port")
    )
    var port: Int = 8000

    @Option(name: .long, help: ArgumentHelp("Directory for received files; created if missing.", valueName: "dir"))
    var dir: String = "."

    @Option(name: .long, help: ArgumentHelp("Token clients must present (env XFER_TOKEN).", valueName: "token"))
    var token: String?

    @Option(
        name: .customLong("tls-cert"),
        help: ArgumentHelp("PEM certificate chain to serve wss:// with (needs --tls-key).", valueName: "file")
    )
    var tlsCert: String?

    @Option(
        name: .customLong("tls-key"),
        help: ArgumentHelp("PEM private key of --tls-cert.", valueName: "file")
    )
    var tlsKey: String?

    @OptionGroup var heartbeat: HeartbeatOptions

    @Option(name: .long, help: ArgumentHelp("Most simultaneous connections; more get HTTP 503.", valueName: "n"))
    var maxConnections: Int = 10_000

    @Option(
        name: .long,
        help: ArgumentHelp("Largest text message in bytes; larger ones close with 1009.", valueName: "bytes")
    )
    var maxTextBytes: Int = 1 << 20

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Most connections from one client address, idle and unfinished ones included; more get HTTP 429 (0: no limit).",
            valueName: "n"
        )
    )
    var maxConnectionsPerAddress: Int = 0

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Most bytes of texts queued for one connection that does not read; past it the connection is closed as a slow consumer (1013). Suffixes K, M, G.",
            valueName: "size"
        )
    )
    var maxQueuedBytes: String = "8M"

    @Option(
        name: .long,
        help: ArgumentHelp("Most texts queued for one connection that does not read (then as above).", valueName: "n")
    )
    var maxQueuedTexts: Int = 10_000

    @Flag(name: .long, help: .hidden)
    var echo = false

    @Option(
        name: .long,
        help: ArgumentHelp("Seconds a client has from connecting to sending a valid timezone.", valueName: "seconds")
    )
    var handshakeTimeout: Double = 10

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Seconds texts for a listener name are held while its listeners reconnect.",
            valueName: "seconds"
        )
    )
    var holdSeconds: Double = 60

    @Option(name: .long, help: ArgumentHelp("Most texts held per listener name.", valueName: "n"))
    var holdMessages: Int = 1000

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Largest upload accepted, in bytes; suffixes K, M, G, T (powers of 1024).",
            valueName: "size"
        )
    )
    var maxFileSize: String = "1T"

    @Option(
        name: .long,
        help: ArgumentHelp("Days a partial upload is kept for a resume after its last block.", valueName: "days")
    )
    var keepPartial: Double = 7

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Join a cluster whose bus, texts and upload leases live in this PostgreSQL (env XFER_CLUSTER); every instance uses the same --dir. See \"Run several instances\" in README.md.",
            valueName: "postgres://user@host:port/db"
        )
    )
    var cluster: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "This instance's name in the cluster, unique among its instances (default HOSTNAME:PORT).",
            valueName: "name"
        )
    )
    var instance: String?

    func validate() throws {
        guard (0...65535).contains(self.port) else {
            throw ValidationError("--port must be between 0 and 65535 (0 picks a free port)")
        }
        if (self.tlsCert == nil) != (self.tlsKey == nil) {
            throw ValidationError("TLS needs both --tls-cert FILE and --tls-key FILE (or neither, for plain ws://)")
        }
        guard self.maxConnections > 0 else { throw ValidationError("--max-connections must be at least 1") }
        guard self.maxTextBytes > 0, self.maxTextBytes <= 64 << 20 else {
            throw ValidationError("--max-text-bytes must be between 1 and 67108864")
        }
        guard self.maxConnectionsPerAddress >= 0 else {
            throw ValidationError("--max-connections-per-address must be 0 (no limit) or more")
        }
        guard let queued = ByteSize.parse(self.maxQueuedBytes), queued <= Int.max else {
            throw ValidationError("--max-queued-bytes must be a number of bytes, optionally with K, M or G, e.g. 8M")
        }
        guard self.maxQueuedTexts > 0 else { throw ValidationError("--max-queued-texts must be at least 1") }
        guard self.handshakeTimeout > 0 else { throw ValidationError("--handshake-timeout must be positive") }
        guard ByteSize.parse(self.maxFileSize) != nil else {
            throw ValidationError("--max-file-size must be a number of bytes, optionally with K, M, G or T, e.g. 10G")
        }
        guard self.keepPartial > 0 else { throw ValidationError("--keep-partial must be a positive number of days") }
        guard self.holdSeconds >= 0, self.holdMessages >= 0 else {
            throw ValidationError("--hold-seconds and --hold-messages must not be negative")
        }
        if self.instance != nil && self.clusterURL == nil {
            throw ValidationError("--instance names a member of a cluster: give --cluster URL (or XFER_CLUSTER) too")
        }
    }

    /// `--cluster`, or `XFER_CLUSTER` when it is set and not empty.
    var clusterURL: String? {
        self.cluster ?? ProcessInfo.processInfo.environment["XFER_CLUSTER"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// `--instance`, or HOSTNAME:PORT (HOSTNAME:pid-PID with --port 0, whose port is not known yet).
    var instanceName: String {
        if let instance = self.instance { return instance }
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "xfer"
        return self.port == 0 ? "\(host):pid-\(getpid())" : "\(host):\(self.port)"
    }

    func run() async throws {
        let directory = try Self.prepareDirectory(self.dir)
        let configuration = ServerConfiguration(
            host: self.host,
            port: self.port,
            directory: directory,
            token: Token.resolve(self.token),
            pingInterval: self.heartbeat.pingInterval,
            pingTimeout: self.heartbeat.pingTimeout,
            handshakeTimeout: self.handshakeTimeout,
            maxConnections: self.maxConnections,
            maxTextBytes: self.maxTextBytes,
            maxFileSize: ByteSize.parse(self.maxFileSize) ?? (1 << 40),
            partialTTL: self.keepPartial * 86400,
            tls: self.tlsCert.flatMap { cert in
                self.tlsKey.map { ServerTLSSettings(certificateFile: cert, keyFile: $0) }
            },
            maxConnectionsPerAddress: self.maxConnectionsPerAddress,
            maxQueuedBytes: Int(ByteSize.parse(self.maxQueuedBytes) ?? (8 << 20)),
            maxQueuedTexts: self.maxQueuedTexts,
            echo: self.echo
        )
        // Every event goes to stdout and to the counts behind GET /metrics.
        let metrics = MetricsEventSink()
        var sink: any EventSink = FanOutEventSink([FileDescriptorSink(), metrics])
        let local = LocalUploadStore(directory: directory, maxFileSize: configuration.maxFileSize)
        var cluster: Cluster?
        if let url = self.clusterURL {
            let settings = try ClusterSettings(
                url: url,
                instance: self.instanceName,
                holdSeconds: self.holdSeconds,
                holdMessages: self.holdMessages
            )
            sink = InstanceTaggingSink(instance: settings.instance, next: sink)
            let member = Cluster(settings: settings, sink: sink, local: local)
            // Unreachable at start: an error event and exit 69, so that a service manager tries again.
            try await member.start()
            cluster = member
        }
        let member = cluster
        let router: any MessageRouter =
            member?.router ?? LocalMessageRouter(holdSeconds: self.holdSeconds, maxHeldPerName: self.holdMessages)
        let store: any UploadStore = member?.store ?? local
        var health: (@Sendable () -> HealthState)?
        if let member { health = { member.bus.health } }
        let server = XferServer(
            configuration: configuration,
            sink: sink,
            metrics: metrics,
            router: router,
            store: store,
            health: health
        )
        let port = try await server.start()
        let systemd = SystemdNotifier()
        systemd.ready(host: self.host, port: port)
        let stopped = SignalWatcher.onTermination {
            systemd.stopping()
            await server.shutdown()
            await member?.stop()
        }
        ServeCommandInterpreter(registry: server.registry, router: server.router, sink: sink, loop: server.eventLoop)
            .start()
        await stopped.value
    }

    /// Makes `path` absolute, creates it if missing, and checks that it is a writable directory.
    static func prepareDirectory(_ path: String) throws(XferError) -> String {
        let manager = FileManager.default
        let absolute = URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: manager.currentDirectoryPath))
            .standardizedFileURL.path
        var isDirectory: ObjCBool = false
        if !manager.fileExists(atPath: absolute, isDirectory: &isDirectory) {
            do {
                try manager.createDirectory(atPath: absolute, withIntermediateDirectories: true)
            } catch {
                throw XferError(.usage, "cannot create --dir \(absolute): \(error.localizedDescription)")
            }
        } else if !isDirectory.boolValue {
            throw XferError(.usage, "--dir \(absolute) is a file, not a directory")
        }
        guard manager.isWritableFile(atPath: absolute) else {
            throw XferError(.usage, "--dir \(absolute) is not writable by this user")
        }
        return absolute
    }
}

/// Sizes as people type them: `1048576`, `512K`, `10G`.
enum ByteSize {
    static func parse(_ text: String) -> UInt64? {
        let units: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        var digits = text.uppercased()
        if digits.hasSuffix("B") { digits.removeLast() }
        var multiplier: UInt64 = 1
        if let last = digits.last, let unit = units[last] {
            multiplier = unit
            digits.removeLast()
        }
        guard let value = UInt64(digits), value > 0 else { return nil }
        let (product, overflow) = value.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : product
    }
}

/// Runs `shutdown` once on the first SIGINT or SIGTERM; the returned task ends after it.
enum SignalWatcher {
    static func onTermination(_ shutdown: @escaping @Sendable () async -> Void) -> Task<Void, Never> {
        let (stream, continuation) = AsyncStream<Int32>.makeStream()
        var sources: [DispatchSourceSignal] = []
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler { continuation.yield(signalNumber) }
            source.resume()
            sources.append(source)
        }
        let kept = UncheckedBox(sources)
        return Task {
            for await _ in stream {
                _ = kept
                await shutdown()
                return
            }
        }
    }
}

/// Holds a non-Sendable value that is only kept alive, never used across threads.
final class UncheckedBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
