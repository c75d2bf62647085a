/// Ping scheduling, round-trip measurement and dead-peer detection for one connection, as a value.
///
/// The caller calls `tick(now:)` every `interval` and performs the returned action. A ping's payload is the
/// 8-byte big-endian monotonic time it was sent at (RFC 6455 section 5.5.3 lets a pong echo the ping's
/// application data), so the round trip is measured from the pong itself with no table of outstanding pings.
/// Any frame from the peer counts as a sign of life; a half-open TCP connection sends none and times out.
public struct Heartbeat: Sendable {
    /// Nanoseconds between pings.
    public let intervalNanos: UInt64
    /// Nanoseconds of silence after which the peer is considered gone.
    public let timeoutNanos: UInt64
    private var lastHeardNanos: UInt64

    /// What to do on a tick.
    public enum TickAction: Sendable, Equatable {
        /// Send a ping with this payload.
        case sendPing([UInt8])
        /// The peer has been silent for longer than the timeout: close with reason `timeout`.
        case timedOut(silentNanos: UInt64)
    }

    /// A heartbeat started at `now` with the given interval and timeout in seconds.
    public init(intervalSeconds: Double, timeoutSeconds: Double, now: UInt64) {
        self.intervalNanos = UInt64(max(intervalSeconds, 0.001) * 1e9)
        self.timeoutNanos = UInt64(max(timeoutSeconds, 0.001) * 1e9)
        self.lastHeardNanos = now
    }

    /// Any frame arrived from the peer at `now`.
    public mutating func frameReceived(now: UInt64) {
        self.lastHeardNanos = now
    }

    /// The timer fired at `now`.
    public func tick(now: UInt64) -> TickAction {
        let silent = now &- self.lastHeardNanos
        if now > self.lastHeardNanos && silent >= self.timeoutNanos {
            return .timedOut(silentNanos: silent)
        }
        return .sendPing(Self.payload(now: now))
    }

    /// The ping payload for a ping sent at `now`.
    public static func payload(now: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: now >> (56 - 8 * UInt64($0))) }
    }

    /// The round trip in nanoseconds for a pong with `payload` received at `now`, or nil when the payload is not
    /// one of our timestamps (an unsolicited pong, which RFC 6455 section 5.5.3 allows and we ignore).
    public static func roundTrip(pongPayload payload: some Collection<UInt8>, now: UInt64) -> UInt64? {
        guard payload.count == 8 else { return nil }
        let sent = payload.reduce(UInt64(0)) { ($0 << 8) | UInt64($1) }
        guard sent <= now, now - sent < 3_600_000_000_000 else { return nil }
        return now - sent
    }
}
