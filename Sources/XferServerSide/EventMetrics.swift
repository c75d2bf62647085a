import XferEvents

/// What the server's events mean for its metrics, as a value: one event in, the metric updates out.
///
/// `MetricsEventSink` feeds it every event `serve` emits and applies the `MetricsAction`s it returns to Prometheus
/// metrics. It remembers only what later events need: each connection's role (a `disconnected` event carries
/// none) and, for an upload connection, how far its last `progress` event had got, so that counters grow by the
/// difference. Times come from the events themselves.
struct EventMetrics {
    /// One change to the metrics.
    enum MetricsAction: Equatable {
        /// A connection of `role` completed its handshake: `xfer_connections` up, `xfer_connections_total` up.
        case connectionOpened(role: String)
        /// A connection of `role` ended: `xfer_connections` down.
        case connectionClosed(role: String)
        /// `count` texts arrived from clients: `xfer_texts_total{direction="in"}`.
        case textsIn(count: Int)
        /// `count` copies of texts went to listeners and plain clients: `xfer_texts_total{direction="relayed"}`.
        case textsRelayed(count: Int)
        /// `count` copies of texts were held for listeners that are away: `xfer_texts_held`.
        case textsHeld(count: Int)
        /// Upload bytes: `raw` verified and written, `wire` received in block payloads: `xfer_upload_bytes_total`.
        case uploadBytes(raw: UInt64, wire: UInt64)
        /// A block failed verification and is sent again: `xfer_upload_blocks_retried_total`.
        case blockRetried
        /// An upload connection ended with `result`: `xfer_uploads_total`.
        case uploadEnded(UploadResult)
        /// The connection that saved an upload took `seconds` from its accept: `xfer_upload_duration_seconds`.
        case uploadDuration(seconds: Double)
        /// A pong came back after `seconds`: `xfer_ping_rtt_seconds`.
        case pingRoundTrip(seconds: Double)
        /// An `error` event with `code`: `xfer_errors_total`.
        case error(code: String)
    }

    /// How an upload connection ended: the `result` label of `xfer_uploads_total`.
    enum UploadResult: String, CaseIterable {
        /// The upload was verified and saved (`file_saved`).
        case saved
        /// The server ended it with an error (its code is counted in `xfer_errors_total`).
        case failed
        /// The connection ended before the upload was saved; a later connection may resume it.
        case interrupted
    }

    /// What is known about one connection.
    private enum Connection {
        /// Connected with `role`; not uploading (yet).
        case connected(role: String)
        /// An upload connection whose upload was accepted.
        case uploading(Upload)
        /// An upload connection whose upload was saved or failed: later events of it change no upload counter.
        case uploadEnded
    }

    /// An accepted upload on one connection, as far as its events have told.
    private struct Upload {
        /// Verified bytes at the last `progress` (the resume offset at first).
        var rawBytes: UInt64
        /// `wire_bytes` at the last `progress`.
        var wireBytes: UInt64
        /// When the upload was accepted (its first `progress`), in milliseconds since the epoch.
        var startedMs: Int64
    }

    private var connections: [Int: Connection] = [:]

    /// An empty tally: no connections known.
    init() {}

    /// `serve` emitted `event`; returns the metric updates it means, in order.
    mutating func eventEmitted(_ event: Event) -> [MetricsAction] {
        let client = event["client"].flatMap(Self.integer).map { Int($0) }
        switch event.kind {
        case .connected:
            guard let client, case .string(let role)? = event["role"] else { return [] }
            self.connections[client] = .connected(role: role)
            return [.connectionOpened(role: role)]
        case .disconnected:
            guard let client, let connection = self.connections.removeValue(forKey: client) else { return [] }
            switch connection {
            case .connected(let role):
                return [.connectionClosed(role: role)]
            case .uploading:
                return [.connectionClosed(role: "upload"), .uploadEnded(.interrupted)]
            case .uploadEnded:
                return [.connectionClosed(role: "upload")]
            }
        case .text:
            // Only the server's own `text` events carry the sending client.
            return client == nil ? [] : [.textsIn(count: 1)]
        case .relayed, .sent:
            let delivered = event["delivered"].flatMap(Self.integer) ?? 0
            let held = event["held"].flatMap(Self.integer) ?? 0
            var actions: [MetricsAction] = []
            if delivered > 0 { actions.append(.textsRelayed(count: Int(delivered))) }
            if held > 0 { actions.append(.textsHeld(count: Int(held))) }
            return actions
        case .progress:
            return self.progress(event, client: client)
        case .retry:
            return client == nil ? [] : [.blockRetried]
        case .fileSaved:
            return self.fileSaved(event, client: client)
        case .ping:
            guard client != nil, let rtt = event["rtt_ms"].flatMap(Self.number) else { return [] }
            return [.pingRoundTrip(seconds: rtt / 1000)]
        case .error:
            guard case .string(let code)? = event["code"] else { return [] }
            var actions: [MetricsAction] = [.error(code: code)]
            if let client, case .uploading? = self.connections[client] {
                self.connections[client] = .uploadEnded
                actions.append(.uploadEnded(.failed))
            }
            return actions
        case .listening, .status, .reconnecting, .clients, .missed, .cluster:
            return []
        }
    }

    /// A server `progress` event: the bytes since the connection's previous one.
    private mutating func progress(_ event: Event, client: Int?) -> [MetricsAction] {
        guard let client, let connection = self.connections[client],
            let raw = event["bytes"].flatMap(Self.integer).map(UInt64.init),
            let wire = event["wire_bytes"].flatMap(Self.integer).map(UInt64.init)
        else { return [] }
        switch connection {
        case .connected:
            // The first progress of a connection reports the offset it resumes from: nothing new has arrived.
            self.connections[client] = .uploading(Upload(rawBytes: raw, wireBytes: wire, startedMs: event.time))
            return []
        case .uploading(var upload):
            let actions: [MetricsAction] = [
                .uploadBytes(raw: raw &- min(raw, upload.rawBytes), wire: wire &- min(wire, upload.wireBytes))
            ]
            upload.rawBytes = max(raw, upload.rawBytes)
            upload.wireBytes = max(wire, upload.wireBytes)
            self.connections[client] = .uploading(upload)
            return actions
        case .uploadEnded:
            return []
        }
    }

    /// A `file_saved` event: the upload's result and how long its connection took.
    private mutating func fileSaved(_ event: Event, client: Int?) -> [MetricsAction] {
        guard let client, case .uploading(let upload)? = self.connections[client] else {
            // Saved after its connection had gone (the commit outlived it): counted, but its duration is unknown.
            return [.uploadEnded(.saved)]
        }
        self.connections[client] = .uploadEnded
        let seconds = Double(max(0, event.time - upload.startedMs)) / 1000
        return [.uploadEnded(.saved), .uploadDuration(seconds: seconds)]
    }

    private static func integer(_ value: JSONScalar) -> Int64? {
        if case .int(let number) = value, number >= 0 { return number }
        return nil
    }

    private static func number(_ value: JSONScalar) -> Double? {
        switch value {
        case .int(let number): return Double(number)
        case .double(let number): return number
        default: return nil
        }
    }
}
