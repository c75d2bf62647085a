import Testing
import XferEvents

@testable import XferServerSide

/// `EventMetrics` without sockets: events in, metric updates out; and `MetricsEventSink`'s exposition.
@Suite struct EventMetricsTests {
    static func connected(_ client: Int, role: String) -> Event {
        .clientConnected(client: client, peer: "127.0.0.1:1", timezone: "UTC", name: nil, role: role, subprotocol: nil)
    }

    static func progress(_ client: Int, bytes: UInt64, wire: UInt64) -> Event {
        .progress(name: "a.bin", bytes: bytes, total: 4_000_000, client: client, upload: "ab12", wireBytes: wire)
    }

    static func saved(_ client: Int) -> Event {
        .fileSaved(
            client: client,
            name: "a.bin",
            path: "/srv/a.bin",
            bytes: 4_000_000,
            sha256: "00",
            upload: "ab12",
            resumedFrom: 1_000_000
        )
    }

    @Test func aDisconnectionClosesTheRoleTheConnectionOpenedWith() {
        var metrics = EventMetrics()
        #expect(metrics.eventEmitted(Self.connected(1, role: "listen")) == [.connectionOpened(role: "listen")])
        #expect(
            metrics.eventEmitted(.disconnected(reason: "closed", code: 1000, client: 1)) == [
                .connectionClosed(role: "listen")
            ]
        )
        // A connection that never completed its handshake was never counted.
        #expect(metrics.eventEmitted(.disconnected(reason: "error", code: 1008, client: 2)) == [])
    }

    @Test func uploadBytesGrowByTheDifferenceFromTheResumeOffset() {
        var metrics = EventMetrics()
        _ = metrics.eventEmitted(Self.connected(3, role: "upload"))
        // The first progress reports the offset the server already held: nothing crossed the wire yet.
        #expect(metrics.eventEmitted(Self.progress(3, bytes: 1_000_000, wire: 0)) == [])
        #expect(
            metrics.eventEmitted(Self.progress(3, bytes: 3_000_000, wire: 500_000)) == [
                .uploadBytes(raw: 2_000_000, wire: 500_000)
            ]
        )
        #expect(
            metrics.eventEmitted(Self.progress(3, bytes: 4_000_000, wire: 600_000)) == [
                .uploadBytes(raw: 1_000_000, wire: 100_000)
            ]
        )
        let actions = metrics.eventEmitted(Self.saved(3))
        #expect(actions.first == .uploadEnded(.saved))
        guard case .uploadDuration(let seconds)? = actions.last, actions.count == 2 else {
            Issue.record("no upload duration in \(actions)")
            return
        }
        #expect(seconds >= 0 && seconds < 5)
        #expect(
            metrics.eventEmitted(.disconnected(reason: "closed", code: 1000, client: 3)) == [
                .connectionClosed(role: "upload")
            ]
        )
    }

    @Test func anUploadEndsOnceAsFailedOrInterrupted() {
        var metrics = EventMetrics()
        _ = metrics.eventEmitted(Self.connected(4, role: "upload"))
        _ = metrics.eventEmitted(Self.progress(4, bytes: 0, wire: 0))
        #expect(
            metrics.eventEmitted(.error(code: "checksum_failed", message: "m", client: 4)) == [
                .error(code: "checksum_failed"), .uploadEnded(.failed),
            ]
        )
        #expect(
            metrics.eventEmitted(.disconnected(reason: "error", code: 1008, client: 4)) == [
                .connectionClosed(role: "upload")
            ]
        )
        _ = metrics.eventEmitted(Self.connected(5, role: "upload"))
        _ = metrics.eventEmitted(Self.progress(5, bytes: 0, wire: 0))
        #expect(
            metrics.eventEmitted(.disconnected(reason: "error", code: nil, client: 5)) == [
                .connectionClosed(role: "upload"), .uploadEnded(.interrupted),
            ]
        )
    }

    @Test func textsCountArrivalsDeliveriesAndHeldCopies() {
        var metrics = EventMetrics()
        #expect(
            metrics.eventEmitted(.textReceived(client: 1, id: 1, text: "a", name: nil, to: "ops")) == [
                .textsIn(count: 1)
            ]
        )
        #expect(
            metrics.eventEmitted(.relayed(client: 1, id: 1, to: "ops", delivered: 2, held: 1, code: nil)) == [
                .textsRelayed(count: 2), .textsHeld(count: 1),
            ]
        )
        #expect(
            metrics.eventEmitted(.sent(command: "broadcast", to: nil, delivered: 3, held: 0, ref: nil)) == [
                .textsRelayed(count: 3)
            ]
        )
        // A listener's own `text` event (no client) is not the server's.
        #expect(metrics.eventEmitted(.textDelivered(from: "server", seq: 1, text: "a")) == [])
        #expect(metrics.eventEmitted(.ping(rttMs: 2.5, client: 1)) == [.pingRoundTrip(seconds: 0.0025)])
    }

    @Test func twoSinksInOneProcessKeepSeparateCounts() {
        let first = MetricsEventSink()
        let second = MetricsEventSink()
        first.emit([Self.connected(1, role: "send"), .textReceived(client: 1, id: 1, text: "a", name: nil, to: nil)])
        let firstText = String(decoding: first.exposition(), as: UTF8.self)
        let secondText = String(decoding: second.exposition(), as: UTF8.self)
        #expect(firstText.contains(#"xfer_texts_total{direction="in"} 1"#))
        #expect(firstText.contains(#"xfer_connections{role="send"} 1.0"#))
        #expect(secondText.contains(#"xfer_texts_total{direction="in"} 0"#))
        #expect(secondText.contains(#"xfer_connections{role="send"} 0.0"#))
    }
}
