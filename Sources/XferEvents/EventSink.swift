import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where events go. The CLI writes them to stdout; tests record them in memory.
public protocol EventSink: Sendable {
    /// Emits `events` in order, as one unit: their lines are not interleaved with other writers' lines.
    func emit(_ events: [Event])
}

extension EventSink {
    /// Emits one event.
    public func emit(_ event: Event) {
        self.emit([event])
    }
}

/// Writes each batch of events as JSON lines to a file descriptor with one `write(2)` call.
///
/// One `write` per batch keeps lines from concurrent connections whole (POSIX: writes to a pipe of up to
/// `PIPE_BUF` bytes are atomic; larger ones from one writer are serialised by the lock here) and flushes at
/// once, also into a pipe: there is no user-space buffer to forget.
public final class FileDescriptorSink: EventSink {
    private let fd: Int32
    private let lock = Mutex<Bool>(false)
    private let onBrokenPipe: (@Sendable () -> Void)?

    /// A sink writing to `fd` (standard output by default). `onBrokenPipe` runs once when the reader has gone
    /// away (EPIPE), so that `xfer listen | head -n 3` can end.
    public init(fd: Int32 = 1, onBrokenPipe: (@Sendable () -> Void)? = nil) {
        self.fd = fd
        self.onBrokenPipe = onBrokenPipe
    }

    public func emit(_ events: [Event]) {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(events.count * 96)
        for event in events {
            event.appendJSONLine(to: &bytes)
        }
        self.write(bytes)
    }

    /// Writes pre-encoded lines (each ending in a newline).
    public func write(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        let brokeNow = self.lock.withLock { broken -> Bool in
            bytes.withUnsafeBytes { raw -> Bool in
                var offset = 0
                while offset < raw.count {
                    let written = Glibc.write(self.fd, raw.baseAddress! + offset, raw.count - offset)
                    if written < 0 {
                        if errno == EINTR || errno == EAGAIN { continue }
                        // The reader went away (EPIPE) or the disk is full: events are lost, the work goes on.
                        let first = errno == EPIPE && !broken
                        if errno == EPIPE { broken = true }
                        return first
                    }
                    offset += written
                }
                return false
            }
        }
        if brokeNow { self.onBrokenPipe?() }
    }
}

/// Keeps events in memory, for tests.
public final class RecordingEventSink: EventSink {
    private let storage = Mutex<[Event]>([])

    /// An empty recorder.
    public init() {}

    public func emit(_ events: [Event]) {
        self.storage.withLock { $0.append(contentsOf: events) }
    }

    /// Everything emitted so far.
    public var events: [Event] {
        self.storage.withLock { $0 }
    }
}

/// Hands every batch of events to several sinks in turn, in the same order: the stdout writer and, for example,
/// a metrics consumer see the same events.
public struct FanOutEventSink: EventSink {
    /// The sinks, in the order each batch reaches them.
    public let sinks: [any EventSink]

    /// A sink that forwards to `sinks`.
    public init(_ sinks: [any EventSink]) {
        self.sinks = sinks
    }

    public func emit(_ events: [Event]) {
        for sink in self.sinks {
            sink.emit(events)
        }
    }
}

/// Adds `instance` to the events that say where something happened (`listening`, `connected`, `file_saved`), for
/// the members of a cluster (`serve --cluster --instance NAME`); every event goes on to `next`.
public struct InstanceTaggingSink: EventSink {
    private let next: any EventSink
    private let instance: String

    /// Tags events with `instance` before `next` gets them.
    public init(instance: String, next: any EventSink) {
        self.instance = instance
        self.next = next
    }

    public func emit(_ events: [Event]) {
        self.next.emit(
            events.map { event in
                switch event.kind {
                case .listening, .connected, .fileSaved: event.adding("instance", .string(self.instance))
                default: event
                }
            }
        )
    }
}
