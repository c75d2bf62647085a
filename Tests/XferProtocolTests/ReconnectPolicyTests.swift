import Testing

@testable import XferProtocol

/// The reconnect policy shared by `listen` and `upload`: which failures are retried, the backoff, the budget.
@Suite struct ReconnectPolicyTests {
    static let lost = XferError(.connectionLost, "connection dropped")

    static func delay(_ decision: ReconnectPolicy.Decision) -> Double? {
        if case .retry(_, let delay) = decision { return delay }
        return nil
    }

    @Test func theBackoffDoublesUpToTheCapWithHalfOfItJitter() {
        var policy = ReconnectPolicy(base: 0.5, cap: 3, maxRetries: nil)
        let low = (0..<5).map { _ in Self.delay(policy.sessionFailed(Self.lost, afterWelcome: false, jitter: 0)) }
        #expect(low == [0.25, 0.5, 1, 1.5, 1.5])
        var high = ReconnectPolicy(base: 0.5, cap: 3, maxRetries: nil)
        let top = (0..<5).map { _ in Self.delay(high.sessionFailed(Self.lost, afterWelcome: false, jitter: 1)) }
        #expect(top == [0.5, 1, 2, 3, 3])
    }

    @Test func aSessionThatGotItsWelcomeStartsTheBackoffOver() {
        var policy = ReconnectPolicy(base: 1, cap: 60, maxRetries: nil)
        _ = policy.sessionFailed(Self.lost, afterWelcome: false, jitter: 1)
        _ = policy.sessionFailed(Self.lost, afterWelcome: false, jitter: 1)
        guard case .retry(let attempt, let delay) = policy.sessionFailed(Self.lost, afterWelcome: true, jitter: 1)
        else {
            Issue.record("not retried")
            return
        }
        #expect(attempt == 1)
        #expect(delay == 1)
        #expect(policy.retries == 3)
    }

    @Test(arguments: [
        XferError.Code.superseded, .unauthorized, .integrityFailed, .protocolError, .diskFull, .replayWindowExceeded,
    ])
    func failuresARetryCannotMendAreNotRetried(_ code: XferError.Code) {
        var policy = ReconnectPolicy(cap: 10, maxRetries: 3)
        let error = XferError(code, "no")
        guard case .giveUp(let reported) = policy.sessionFailed(error, afterWelcome: true, jitter: 0.5) else {
            Issue.record("\(code) was retried")
            return
        }
        #expect(reported.code == code)
        #expect(reported.message == "no")
    }

    @Test(arguments: Array(ReconnectPolicy.retryableCodes))
    func transientFailuresAreRetried(_ code: XferError.Code) {
        var policy = ReconnectPolicy(cap: 10, maxRetries: 3)
        guard case .retry(let attempt, _) = policy.sessionFailed(XferError(code, "x"), afterWelcome: false, jitter: 0)
        else {
            Issue.record("\(code) was not retried")
            return
        }
        #expect(attempt == 1)
    }

    @Test func aBudgetCountsRetriesAcrossTheRunAndSaysSoWhenItRunsOut() {
        var policy = ReconnectPolicy(cap: 10, maxRetries: 2)
        var attempts: [Int] = []
        for afterWelcome in [false, true] {
            if case .retry(let attempt, _) = policy.sessionFailed(Self.lost, afterWelcome: afterWelcome, jitter: 0) {
                attempts.append(attempt)
            }
        }
        #expect(attempts == [1, 2])
        guard case .giveUp(let error) = policy.sessionFailed(Self.lost, afterWelcome: true, jitter: 0) else {
            Issue.record("retried past the budget")
            return
        }
        #expect(error.code == .connectionLost)
        #expect(error.message.hasSuffix("(gave up after 2 retries; run the same command again to resume)"))
    }

    @Test func noRetriesGivesUpAtOnceWithTheSessionsOwnError() {
        var policy = ReconnectPolicy(cap: 10, maxRetries: 0)
        guard case .giveUp(let error) = policy.sessionFailed(Self.lost, afterWelcome: false, jitter: 0) else {
            Issue.record("retried with a budget of 0")
            return
        }
        #expect(error.message == Self.lost.message)
    }
}
