import Testing
import XferProtocol

/// Checks ping payloads, round-trip arithmetic and dead-peer detection, with time passed in.
@Suite struct HeartbeatTests {
    static let second: UInt64 = 1_000_000_000

    @Test func pingPayloadIsTheSendTimeBigEndian() {
        #expect(Heartbeat.payload(now: 0x0102_0304_0506_0708) == [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(Heartbeat.payload(now: 0) == [0, 0, 0, 0, 0, 0, 0, 0])
        #expect(Heartbeat.payload(now: .max) == [UInt8](repeating: 0xFF, count: 8))
    }

    @Test func roundTripIsReceiveTimeMinusTheEchoedSendTime() {
        let sent: UInt64 = 5 * Self.second
        let payload = Heartbeat.payload(now: sent)
        #expect(Heartbeat.roundTrip(pongPayload: payload, now: sent + 1_234_567) == 1_234_567)
        #expect(Heartbeat.roundTrip(pongPayload: payload, now: sent) == 0)
        #expect(Heartbeat.roundTrip(pongPayload: payload[...], now: sent + 7) == 7)
    }

    @Test func foreignOrShortPongPayloadsAreIgnored() {
        let now = 10 * Self.second
        #expect(Heartbeat.roundTrip(pongPayload: [], now: now) == nil)
        #expect(Heartbeat.roundTrip(pongPayload: [1, 2, 3], now: now) == nil)
        #expect(Heartbeat.roundTrip(pongPayload: Array("hello!!".utf8), now: now) == nil)
        #expect(Heartbeat.roundTrip(pongPayload: Heartbeat.payload(now: now) + [0], now: now) == nil)
    }

    @Test func pongsFromTheFutureOrOlderThanAnHourAreIgnored() {
        let now = 7200 * Self.second
        #expect(Heartbeat.roundTrip(pongPayload: Heartbeat.payload(now: now + 1), now: now) == nil)
        #expect(Heartbeat.roundTrip(pongPayload: Heartbeat.payload(now: now - 3600 * Self.second), now: now) == nil)
        #expect(Heartbeat.roundTrip(pongPayload: Array("abcdefgh".utf8), now: now) == nil)
    }

    @Test func intervalAndTimeoutAreKeptInNanoseconds() {
        let heartbeat = Heartbeat(intervalSeconds: 0.5, timeoutSeconds: 2, now: 0)
        #expect(heartbeat.intervalNanos == 500_000_000)
        #expect(heartbeat.timeoutNanos == 2 * Self.second)
        let floor = Heartbeat(intervalSeconds: 0, timeoutSeconds: -1, now: 0)
        #expect(floor.intervalNanos == 1_000_000)
        #expect(floor.timeoutNanos == 1_000_000)
    }

    @Test func tickBeforeTheTimeoutSendsAPingStampedWithNow() {
        let start = 100 * Self.second
        let heartbeat = Heartbeat(intervalSeconds: 1, timeoutSeconds: 3, now: start)
        let now = start + 3 * Self.second - 1
        #expect(heartbeat.tick(now: now) == .sendPing(Heartbeat.payload(now: now)))
    }

    @Test func timedOutAfterTimeoutOfSilence() {
        let start = 100 * Self.second
        let heartbeat = Heartbeat(intervalSeconds: 1, timeoutSeconds: 3, now: start)
        #expect(heartbeat.tick(now: start + 3 * Self.second) == .timedOut(silentNanos: 3 * Self.second))
        #expect(heartbeat.tick(now: start + 10 * Self.second) == .timedOut(silentNanos: 10 * Self.second))
    }

    @Test func frameReceivedResetsTheSilence() {
        let start = 100 * Self.second
        var heartbeat = Heartbeat(intervalSeconds: 1, timeoutSeconds: 3, now: start)
        heartbeat.frameReceived(now: start + 2 * Self.second)
        let now = start + 4 * Self.second
        #expect(heartbeat.tick(now: now) == .sendPing(Heartbeat.payload(now: now)))
        #expect(heartbeat.tick(now: start + 5 * Self.second) == .timedOut(silentNanos: 3 * Self.second))
    }

    @Test func aClockThatSeemsToGoBackwardsNeverTimesOut() {
        let heartbeat = Heartbeat(intervalSeconds: 1, timeoutSeconds: 3, now: 100 * Self.second)
        #expect(heartbeat.tick(now: 50 * Self.second) == .sendPing(Heartbeat.payload(now: 50 * Self.second)))
    }
}
