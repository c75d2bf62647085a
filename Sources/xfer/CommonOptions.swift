import ArgumentParser
import Foundation
import XferClientSide
import XferProtocol

/// Options every client command shares.
struct ClientOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Server to connect to: ws://HOST:PORT[/PATH], wss://... (TLS) or HOST:PORT (env XFER_SERVER, default ws://127.0.0.1:8000).",
            valueName: "url"
        )
    )
    var server: String?

    @Option(name: .long, help: ArgumentHelp("Token the server requires (env XFER_TOKEN).", valueName: "token"))
    var token: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Timezone to announce: an IANA name, UTC, or +hh:mm (default: this machine's zone).",
            valueName: "zone"
        )
    )
    var timezone: String?

    @Option(
        name: .customLong("tls-ca"),
        help: ArgumentHelp(
            "PEM file of CA certificates (or a self-signed server certificate) to trust for wss:// (env XFER_TLS_CA).",
            valueName: "file"
        )
    )
    var tlsCA: String?

    @Flag(
        name: .long,
        help: "Do not verify the wss:// server's certificate or host name (the traffic is still encrypted)."
    )
    var insecure = false

    @Option(
        name: .long,
        help: ArgumentHelp(
            "HTTP proxy to tunnel through with CONNECT: http://[user:password@]host:port; \"\" for none (default: https_proxy/HTTPS_PROXY for wss://, http_proxy/HTTP_PROXY for ws://; NO_PROXY is honoured; see \"Through a proxy\" in README.md and xfer(1)).",
            valueName: "url"
        )
    )
    var proxy: String?

    @OptionGroup var heartbeat: HeartbeatOptions

    /// How to verify a `wss://` server: `--insecure`, `--tls-ca` or XFER_TLS_CA, else the system's roots.
    var tlsSettings: ClientTLSSettings {
        let caFile = self.tlsCA ?? ProcessInfo.processInfo.environment["XFER_TLS_CA"].flatMap { $0.isEmpty ? nil : $0 }
        return ClientTLSSettings(caFile: caFile, insecure: self.insecure)
    }

    /// The configuration every client command starts from: these options for `role` at `server`.
    func configuration(role: ClientKind, server: ServerURL, timezone: String) -> ClientConfiguration {
        ClientConfiguration(
            server: server,
            token: self.resolvedToken,
            timezone: timezone,
            role: role,
            pingInterval: self.heartbeat.pingInterval,
            pingTimeout: self.heartbeat.pingTimeout,
            tls: self.tlsSettings,
            proxy: self.proxyChoice(for: server).flatMap { choice in
                if case .through(let proxy) = choice { return proxy }
                return nil
            }
        )
    }

    /// The proxy for `server` from `--proxy` or the environment (`validate()` has checked that it parses).
    func proxyChoice(for server: ServerURL) -> ProxyChoice? {
        try? ProxyChoice.resolve(option: self.proxy, environment: ProcessInfo.processInfo.environment, server: server)
    }

    /// The server URL from the option, the environment, or the default.
    func serverURL() throws(XferError) -> ServerURL {
        let text = self.server ?? ProcessInfo.processInfo.environment["XFER_SERVER"] ?? ServerURL.defaultValue
        return try ServerURL(parsing: text)
    }

    /// The token from the option or the environment.
    var resolvedToken: String? { Token.resolve(self.token) }

    /// The timezone to send: `--timezone`, or this machine's zone.
    func resolvedTimezone() throws(XferError) -> String {
        if let zone = self.timezone {
            return try ClientTimezone.validate(zone, isKnownZone: { TimeZone(identifier: $0) != nil })
        }
        return MachineTimezone.identifier
    }

    func validate() throws {
        if let server = self.server {
            do { _ = try ServerURL(parsing: server) } catch { throw ValidationError(error.message) }
        }
        // A bad XFER_SERVER is reported when the command runs; a bad proxy URL is a usage error now.
        if let server = try? self.serverURL() {
            do {
                _ = try ProxyChoice.resolve(
                    option: self.proxy,
                    environment: ProcessInfo.processInfo.environment,
                    server: server
                )
            } catch {
                throw ValidationError(error.message)
            }
        }
        if self.insecure && self.tlsCA != nil {
            throw ValidationError("use either --tls-ca FILE (verify against that CA) or --insecure (no verification)")
        }
        try self.heartbeat.validate()
    }
}

/// `--ping-interval` and `--ping-timeout`, shared by the server and the clients.
struct HeartbeatOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Seconds between WebSocket pings; 20 stays under common 60 s proxy idle timeouts.",
            valueName: "seconds"
        )
    )
    var pingInterval: Double = 20

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Seconds without any frame from the peer before it is considered gone.",
            valueName: "seconds"
        )
    )
    var pingTimeout: Double = 60

    func validate() throws {
        guard self.pingInterval > 0, self.pingInterval.isFinite else {
            throw ValidationError("--ping-interval must be a positive number of seconds, e.g. --ping-interval 20")
        }
        guard self.pingTimeout > self.pingInterval, self.pingTimeout.isFinite else {
            throw ValidationError("--ping-timeout must be longer than --ping-interval, e.g. --ping-timeout 60")
        }
    }
}

/// This machine's timezone as an IANA name, falling back to UTC.
enum MachineTimezone {
    static var identifier: String {
        let zone = TimeZone.current.identifier
        if (try? ClientTimezone.validate(zone, isKnownZone: { TimeZone(identifier: $0) != nil })) != nil {
            return zone
        }
        return "UTC"
    }
}

/// The shared secret of `--token`, on both sides.
enum Token {
    /// `option` when given, else a non-empty `XFER_TOKEN`, else none.
    static func resolve(_ option: String?) -> String? {
        option ?? ProcessInfo.processInfo.environment["XFER_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
    }
}
