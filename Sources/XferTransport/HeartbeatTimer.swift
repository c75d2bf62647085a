import NIOCore
import XferProtocol

/// Runs one connection's `Heartbeat` on its event loop: a ping every interval, and the peer's silence reported
/// once it lasts past the timeout. Both connection handlers use it; each says what its ping frame looks like
/// (clients mask theirs, RFC 6455 section 5.3) and what a timeout means to it.
///
/// Not thread-safe: create, start, feed and cancel it on the connection's event loop.
package final class HeartbeatTimer {
    private var heartbeat: Heartbeat
    private var timer: Scheduled<Void>?

    /// A timer pinging every `intervalSeconds` and giving up after `timeoutSeconds` of silence.
    package init(intervalSeconds: Double, timeoutSeconds: Double) {
        self.heartbeat = Heartbeat(
            intervalSeconds: intervalSeconds,
            timeoutSeconds: timeoutSeconds,
            now: Monotonic.now()
        )
    }

    /// A frame arrived from the peer: the silence starts over.
    package func frameReceived() {
        self.heartbeat.frameReceived(now: Monotonic.now())
    }

    /// Ticks on `loop` until cancelled or timed out: `ping` gets each ping's payload to send; `timedOut` gets the
    /// silence in nanoseconds, once, and then the timer stops.
    package func start(
        on loop: EventLoop,
        ping: @escaping ([UInt8]) -> Void,
        timedOut: @escaping (UInt64) -> Void
    ) {
        let interval = TimeAmount.nanoseconds(Int64(self.heartbeat.intervalNanos))
        self.timer = loop.assumeIsolated().scheduleTask(in: interval) {
            switch self.heartbeat.tick(now: Monotonic.now()) {
            case .sendPing(let payload):
                ping(payload)
                self.start(on: loop, ping: ping, timedOut: timedOut)
            case .timedOut(let silent):
                timedOut(silent)
            }
        }
    }

    /// Stops ticking.
    package func cancel() {
        self.timer?.cancel()
        self.timer = nil
    }
}
