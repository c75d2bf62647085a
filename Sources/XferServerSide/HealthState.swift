/// What `GET /health` reports beyond the basics: whether the server can serve (a cluster instance cannot while its
/// PostgreSQL is unreachable: 503, so that a balancer moves clients away) and, in a cluster, the instance's name.
public struct HealthState: Sendable, Equatable {
    /// 200 when true, 503 when false.
    public var ok: Bool
    /// `ok`, or why not (`cluster_unavailable`).
    public var status: String
    /// The `--instance` name of a cluster member; nil for a single server.
    public var instance: String?

    /// A health state; the default is a single healthy server.
    public init(ok: Bool = true, status: String = "ok", instance: String? = nil) {
        self.ok = ok
        self.status = status
        self.instance = instance
    }
}
