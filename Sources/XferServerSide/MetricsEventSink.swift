import CoreMetrics
import Prometheus
import Synchronization
import XferEvents
import XferProtocol

/// Counts what `serve` does from its events and renders it in the Prometheus text format for `GET /metrics`.
///
/// It sits beside the stdout sink in a `FanOutEventSink`, so it sees exactly the events `serve` prints;
/// `EventMetrics` decides what each one means. The metrics are swift-metrics objects made by a
/// `PrometheusMetricsFactory` over this sink's own `PrometheusCollectorRegistry`: nothing is bootstrapped in the
/// global `MetricsSystem`, so several servers in one process (the tests) keep separate counts.
public final class MetricsEventSink: EventSink {
    /// Buckets of `xfer_ping_rtt_seconds`: 100 µs to 5 s.
    static let pingBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .microseconds(2500),
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5),
    ]
    /// Buckets of `xfer_upload_duration_seconds`: 100 ms to 2 hours.
    static let uploadBuckets: [Duration] = [
        .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5),
        .seconds(10), .seconds(30), .seconds(60), .seconds(300), .seconds(900), .seconds(1800), .seconds(3600),
        .seconds(7200),
    ]

    private let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory
    private let tally = Mutex(EventMetrics())
    private let connectionsByRole: [String: (open: CoreMetrics.Meter, total: CoreMetrics.Counter)]
    private let textsIn: CoreMetrics.Counter
    private let textsRelayed: CoreMetrics.Counter
    private let textsHeld: CoreMetrics.Counter
    private let rawBytes: CoreMetrics.Counter
    private let wireBytes: CoreMetrics.Counter
    private let blocksRetried: CoreMetrics.Counter
    private let uploads: [EventMetrics.UploadResult: CoreMetrics.Counter]
    private let uploadDuration: CoreMetrics.Timer
    private let pingRoundTrip: CoreMetrics.Timer
    private let errors = Mutex<[String: CoreMetrics.Counter]>([:])

    /// A sink with every metric at zero.
    public init() {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets = [
            "xfer_ping_rtt_seconds": Self.pingBuckets,
            "xfer_upload_duration_seconds": Self.uploadBuckets,
        ]
        self.factory = factory
        // Every role, direction, kind and result is created up front, so that a scrape shows them at 0.
        var byRole: [String: (open: CoreMetrics.Meter, total: CoreMetrics.Counter)] = [:]
        for role in ClientKind.allCases.map(\.rawValue) {
            byRole[role] = (
                CoreMetrics.Meter(label: "xfer_connections", dimensions: [("role", role)], factory: factory),
                CoreMetrics.Counter(label: "xfer_connections_total", dimensions: [("role", role)], factory: factory)
            )
        }
        self.connectionsByRole = byRole
        self.textsIn = CoreMetrics.Counter(
            label: "xfer_texts_total",
            dimensions: [("direction", "in")],
            factory: factory
        )
        self.textsRelayed = CoreMetrics.Counter(
            label: "xfer_texts_total",
            dimensions: [("direction", "relayed")],
            factory: factory
        )
        self.textsHeld = CoreMetrics.Counter(label: "xfer_texts_held", factory: factory)
        self.rawBytes = CoreMetrics.Counter(
            label: "xfer_upload_bytes_total",
            dimensions: [("kind", "raw")],
            factory: factory
        )
        self.wireBytes = CoreMetrics.Counter(
            label: "xfer_upload_bytes_total",
            dimensions: [("kind", "wire")],
            factory: factory
        )
        self.blocksRetried = CoreMetrics.Counter(label: "xfer_upload_blocks_retried_total", factory: factory)
        var uploads: [EventMetrics.UploadResult: CoreMetrics.Counter] = [:]
        for result in EventMetrics.UploadResult.allCases {
            uploads[result] = CoreMetrics.Counter(
                label: "xfer_uploads_total",
                dimensions: [("result", result.rawValue)],
                factory: factory
            )
        }
        self.uploads = uploads
        self.uploadDuration = CoreMetrics.Timer(label: "xfer_upload_duration_seconds", factory: factory)
        self.pingRoundTrip = CoreMetrics.Timer(label: "xfer_ping_rtt_seconds", factory: factory)
    }

    public func emit(_ events: [Event]) {
        let actions = self.tally.withLock { tally in events.flatMap { tally.eventEmitted($0) } }
        for action in actions {
            self.apply(action)
        }
    }

    /// Every metric in the Prometheus text exposition format, version 0.0.4.
    public func exposition() -> [UInt8] {
        self.registry.emitToBuffer()
    }

    private func apply(_ action: EventMetrics.MetricsAction) {
        switch action {
        case .connectionOpened(let role):
            let metrics = self.connection(role: role)
            metrics.open.increment()
            metrics.total.increment()
        case .connectionClosed(let role):
            self.connection(role: role).open.decrement()
        case .textsIn(let count):
            self.textsIn.increment(by: count)
        case .textsRelayed(let count):
            self.textsRelayed.increment(by: count)
        case .textsHeld(let count):
            self.textsHeld.increment(by: count)
        case .uploadBytes(let raw, let wire):
            if raw > 0 { self.rawBytes.increment(by: Int64(clamping: raw)) }
            if wire > 0 { self.wireBytes.increment(by: Int64(clamping: wire)) }
        case .blockRetried:
            self.blocksRetried.increment()
        case .uploadEnded(let result):
            self.uploads[result]?.increment()
        case .uploadDuration(let seconds):
            self.uploadDuration.recordNanoseconds(Int64(seconds * 1e9))
        case .pingRoundTrip(let seconds):
            self.pingRoundTrip.recordNanoseconds(Int64(seconds * 1e9))
        case .error(let code):
            self.errorCounter(code: code).increment()
        }
    }

    /// The metrics of `role`; a role not known at start gets its own on first use.
    private func connection(role: String) -> (open: CoreMetrics.Meter, total: CoreMetrics.Counter) {
        if let known = self.connectionsByRole[role] { return known }
        return (
            CoreMetrics.Meter(label: "xfer_connections", dimensions: [("role", role)], factory: self.factory),
            CoreMetrics.Counter(label: "xfer_connections_total", dimensions: [("role", role)], factory: self.factory)
        )
    }

    /// The counter of error `code`, made on its first use.
    private func errorCounter(code: String) -> CoreMetrics.Counter {
        self.errors.withLock { errors in
            if let counter = errors[code] { return counter }
            let counter = CoreMetrics.Counter(
                label: "xfer_errors_total",
                dimensions: [("code", code)],
                factory: self.factory
            )
            errors[code] = counter
            return counter
        }
    }
}
