import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Tells systemd how `serve` is doing (sd_notify(3)): one datagram per message to the unix socket named by
/// `NOTIFY_SOCKET`, as a `Type=notify` unit expects. Without `NOTIFY_SOCKET` it does nothing. No library: the
/// protocol is a datagram of `KEY=value` lines; a name starting with `@` is in the abstract namespace.
struct SystemdNotifier: Sendable {
    /// Where the messages go, or nil when not run by systemd (or a test standing in for it).
    let socketPath: String?

    /// A notifier for `NOTIFY_SOCKET` in `environment`.
    init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.socketPath = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The server listens on `port`: `READY=1`, a `STATUS=` line, and `MAINPID=`.
    func ready(host: String, port: Int) {
        self.send("READY=1\nSTATUS=listening on \(host):\(port)\nMAINPID=\(getpid())\n")
    }

    /// The server has begun to shut down.
    func stopping() {
        self.send("STOPPING=1\nSTATUS=shutting down\n")
    }

    /// The `sockaddr_un` path bytes for `path`: `@name` becomes a leading NUL (abstract namespace, no trailing
    /// NUL counted); nil when the path does not fit in `sun_path`.
    static func addressBytes(_ path: String) -> [UInt8]? {
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: sockaddr_un().sun_path)
        // A filesystem path needs room for its terminating NUL; an abstract name is counted exactly.
        guard !bytes.isEmpty, bytes.count + (bytes[0] == 0 ? 0 : 1) <= capacity else { return nil }
        return bytes
    }

    /// Sends `message` as one datagram; failures are ignored, as sd_notify's callers do: the service runs on.
    private func send(_ message: String) {
        guard let path = self.socketPath, let pathBytes = Self.addressBytes(path) else { return }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
        }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + pathBytes.count)
        let payload = Array(message.utf8)
        _ = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                payload.withUnsafeBytes { bytes in
                    sendto(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL), socketAddress, length)
                }
            }
        }
    }
}
