import Foundation
import XferProtocol

/// Where the cluster's PostgreSQL is and who this instance is: from `serve --cluster URL --instance NAME`.
public struct ClusterSettings: Sendable, Equatable {
    /// PostgreSQL's host name or address.
    public var host: String
    /// PostgreSQL's port (5432 by default).
    public var port: Int
    /// The role to log in as.
    public var user: String
    /// Its password, if the server asks for one (from the URL, or `PGPASSWORD`).
    public var password: String?
    /// The database holding the `xfer_*` tables (default: the user's name, as `psql` does).
    public var database: String
    /// This instance's name in the cluster: unique among the instances sharing the database.
    public var instance: String
    /// Seconds texts are held (`--hold-seconds`).
    public var holdSeconds: Double
    /// Most texts replayed per name (`--hold-messages`).
    public var holdMessages: Int

    /// Settings from a `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` URL (also `postgresql://`).
    ///
    /// Throws `usage` with what is wrong: a scheme other than postgres, no host, no user, a bad port.
    public init(
        url: String,
        instance: String,
        holdSeconds: Double = 60,
        holdMessages: Int = 1000,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(XferError) {
        let redacted = Self.redact(url)
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
            scheme == "postgres" || scheme == "postgresql"
        else {
            throw XferError(.usage, "--cluster must be a postgres://USER@HOST:PORT/DB URL, not \(redacted)")
        }
        guard var host = components.host, !host.isEmpty else {
            throw XferError(.usage, "--cluster \(redacted) has no host: use postgres://USER@HOST:PORT/DB")
        }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard let user = components.user, !user.isEmpty else {
            throw XferError(.usage, "--cluster \(redacted) has no user: use postgres://USER@HOST:PORT/DB")
        }
        let port = components.port ?? 5432
        guard (1...65535).contains(port) else {
            throw XferError(.usage, "--cluster \(redacted): the port must be between 1 and 65535")
        }
        let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        guard !instance.isEmpty, instance.utf8.count <= 200,
            instance.unicodeScalars.allSatisfy({ $0.value > 32 && $0.value < 127 })
        else {
            throw XferError(.usage, "--instance must be 1-200 printable ASCII characters without spaces")
        }
        self.host = host
        self.port = port
        self.user = user
        self.password = components.password ?? environment["PGPASSWORD"]
        self.database = path.isEmpty ? user : path
        self.instance = instance
        self.holdSeconds = holdSeconds
        self.holdMessages = holdMessages
    }

    /// `postgres://USER@HOST:PORT/DB`, without the password: for messages and logs.
    public var displayURL: String {
        let host = self.host.contains(":") ? "[\(self.host)]" : self.host
        return "postgres://\(self.user)@\(host):\(self.port)/\(self.database)"
    }

    /// `url` with any password replaced by `***`.
    static func redact(_ url: String) -> String {
        guard let at = url.lastIndex(of: "@"), let schemeEnd = url.range(of: "://")?.upperBound,
            schemeEnd < at, let colon = url[schemeEnd..<at].firstIndex(of: ":")
        else { return url }
        return String(url[..<url.index(after: colon)]) + "***" + String(url[at...])
    }
}
