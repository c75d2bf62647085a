import NIOCore
import Synchronization

/// Counts the open TCP connections of each client address, for `--max-connections-per-address`.
///
/// Counted from accept to close, so idle sockets and upgrades that never finish count as much as clients: one
/// address cannot take every connection slot or file descriptor of the server.
final class AddressLimiter: Sendable {
    private let counts = Mutex<[String: Int]>([:])
    /// Most connections per address; 0: no limit.
    let limit: Int

    /// A limiter allowing `limit` connections per address (0: no limit).
    init(limit: Int) {
        self.limit = limit
    }

    /// Counts a new connection from `address`; false (and not counted) when the address is at its limit.
    func open(_ address: String) -> Bool {
        guard self.limit > 0 else { return true }
        return self.counts.withLock { counts in
            let current = counts[address, default: 0]
            guard current < self.limit else { return false }
            counts[address] = current + 1
            return true
        }
    }

    /// A counted connection from `address` closed.
    func close(_ address: String) {
        guard self.limit > 0 else { return }
        self.counts.withLock { counts in
            let left = counts[address, default: 1] - 1
            counts[address] = left > 0 ? left : nil
        }
    }

    /// The address a connection is counted under: the peer's IP address without its port.
    static func key(_ channel: Channel) -> String {
        channel.remoteAddress?.ipAddress ?? "unknown"
    }
}
