/// When a client connects again after a lost session, and how long it waits first: one policy for `xfer listen`
/// and `xfer upload`.
///
/// Exponential backoff with jitter: retry n (counted since the last session that completed its handshake) waits
/// a time in [c / 2, c] where c = min(`cap`, `base` * 2^(n-1)); half fixed, half random, which spreads
/// reconnecting clients without ever retrying at once. Only failures a retry can mend are retried
/// (`retryableCodes`). Randomness is passed in (`jitter`), so tests need no clock and no luck.
public struct ReconnectPolicy: Sendable, Equatable {
    /// Failures worth another connection: the network, the server's restart or load, a stalled handshake, an
    /// upload another server is writing just now (`busy`), a connection closed for not reading its texts fast enough
    /// (`slow_consumer`: a listener picks up the held texts), too many connections from one address. Not `superseded`: another run of the same upload took over, and taking it back would make them fight.
    public static let retryableCodes: Set<XferError.Code> = [
        .connectionLost, .serverUnreachable, .timeout, .shutdown, .serverFull, .handshakeTimeout, .busy,
        .clusterUnavailable,
        .slowConsumer, .tooManyConnections,
    ]

    /// What to do after a failed session.
    public enum Decision: Sendable {
        /// Wait `delaySeconds`, then connect again; `attempt` is reported in the `reconnecting` event.
        case retry(attempt: Int, delaySeconds: Double)
        /// Stop and report this error (the session's own, or with a note that the retries ran out).
        case giveUp(XferError)
    }

    /// The first wait, in seconds.
    public let base: Double
    /// The longest wait, in seconds.
    public let cap: Double
    /// Most retries in the whole run (`upload --retries`), or nil for no limit (`listen`).
    public let maxRetries: Int?
    /// Retries so far in the whole run.
    public private(set) var retries = 0
    /// Retries since the last session that completed its handshake (the backoff's exponent).
    public private(set) var consecutive = 0

    /// A policy waiting `base` seconds at first and at most `cap`, retrying at most `maxRetries` times (nil: no
    /// limit; 0: never).
    public init(base: Double = 0.5, cap: Double, maxRetries: Int?) {
        self.base = base
        self.cap = cap
        self.maxRetries = maxRetries
    }

    /// A session failed with `error`; `afterWelcome` says whether it had completed its handshake (then the
    /// backoff starts over). `jitter` is a random number in 0...1.
    public mutating func sessionFailed(_ error: XferError, afterWelcome: Bool, jitter: Double) -> Decision {
        if afterWelcome { self.consecutive = 0 }
        let retryable = Self.retryableCodes.contains(error.code)
        guard retryable else { return .giveUp(error) }
        if let maxRetries = self.maxRetries, self.retries >= maxRetries {
            guard self.retries > 0 else { return .giveUp(error) }
            return .giveUp(
                XferError(
                    error.code,
                    "\(error.message) (gave up after \(self.retries) retries; run the same command again to resume)"
                )
            )
        }
        self.retries += 1
        self.consecutive += 1
        let ceiling = min(self.cap, self.base * Double(1 << min(self.consecutive - 1, 30)))
        let delay = ceiling / 2 + ceiling / 2 * min(1, max(0, jitter))
        // A run with a retry budget numbers its retries across the run; an endless listener counts the attempts
        // of the current outage.
        return .retry(attempt: self.maxRetries == nil ? self.consecutive : self.retries, delaySeconds: delay)
    }
}
