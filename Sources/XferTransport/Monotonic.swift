import NIOCore

/// Monotonic time in nanoseconds, for round trips and latencies (never wall-clock time).
package enum Monotonic {
    package static func now() -> UInt64 { NIODeadline.now().uptimeNanoseconds }
}
