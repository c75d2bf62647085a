import XferEvents
import XferProtocol
import XferTransport

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// How one client session ended, as the reconnect loop sees it.
public enum SessionEnd: Sendable {
    /// The work is done (or the user stopped it): no more sessions.
    case done
    /// The session failed; `afterWelcome` says whether the handshake had completed.
    case failed(XferError, afterWelcome: Bool)
    /// The work failed in a way no other session can mend (a changed source, a wrong digest): stop at once.
    case fatal(XferError)
}

/// Runs client sessions until one ends the work, reconnecting by a `ReconnectPolicy`: the driver of that policy
/// for `xfer listen` and `xfer upload`.
public enum ReconnectLoop {
    /// Runs `session` until it returns `.done` (then nil) or a failure the policy gives up on (then that error).
    /// Before each retry it prints a note on stderr, emits `reconnecting` to `sink`, and waits, checking
    /// `isStopped` every 50 ms (then it returns nil at once).
    public static func run(
        policy: ReconnectPolicy,
        sink: any EventSink,
        isStopped: @Sendable () -> Bool = { false },
        session: () async -> SessionEnd
    ) async -> XferError? {
        var policy = policy
        while true {
            let error: XferError
            let afterWelcome: Bool
            switch await session() {
            case .done:
                return nil
            case .fatal(let fatal):
                return fatal
            case .failed(let failure, let welcomed):
                error = failure
                afterWelcome = welcomed
            }
            if isStopped() { return nil }
            switch policy.sessionFailed(error, afterWelcome: afterWelcome, jitter: Double.random(in: 0...1)) {
            case .giveUp(let error):
                return error
            case .retry(let attempt, let delay):
                let milliseconds = Int(delay * 1000)
                let note = Array("xfer: \(error.message); reconnecting in \(milliseconds) ms\n".utf8)
                note.withUnsafeBytes { _ = write(2, $0.baseAddress, $0.count) }
                sink.emit(.reconnecting(attempt: attempt, delayMs: milliseconds))
                let deadline = Monotonic.now() + UInt64(delay * 1e9)
                while Monotonic.now() < deadline {
                    if isStopped() { return nil }
                    let left = deadline - min(deadline, Monotonic.now())
                    try? await Task.sleep(nanoseconds: min(left, 50_000_000))
                }
                if isStopped() { return nil }
            }
        }
    }
}
