import Testing
import XferProtocol

/// Checks the pipelining window of `xfer send`: ids, limits, in-order answers and latency bookkeeping.
@Suite struct SendWindowTests {
    @Test func idsAscendFromOne() {
        var window = SendWindow(window: 10)
        #expect(window.sentCount == 0)
        let ids = (0..<5).map { window.messageSent(now: UInt64($0)) }
        #expect(ids == [1, 2, 3, 4, 5])
        #expect(window.sentCount == 5)
        #expect(window.inFlight == 5)
    }

    @Test func noMoreThanWindowMessagesAreInFlight() {
        var window = SendWindow(window: 3)
        for now in 0..<3 {
            #expect(window.canSend)
            _ = window.messageSent(now: UInt64(now))
        }
        #expect(!window.canSend)
        #expect(window.inFlight == 3)
        _ = window.answerReceived(first: 1, last: 1)
        #expect(window.canSend)
        #expect(window.inFlight == 2)
    }

    @Test func aWindowOfOneIsStopAndWait() {
        var window = SendWindow(window: 1)
        #expect(window.messageSent(now: 0) == 1)
        #expect(!window.canSend)
        #expect(window.answerReceived(first: 1, last: 1) == .answered(first: 1, last: 1, sentAt: [0]))
        #expect(window.messageSent(now: 5) == 2)
    }

    @Test func answersReportSendTimesInOrder() {
        var window = SendWindow(window: 8)
        for now: UInt64 in [100, 200, 300, 400] {
            _ = window.messageSent(now: now)
        }
        #expect(window.answerReceived(first: 1, last: 1) == .answered(first: 1, last: 1, sentAt: [100]))
        #expect(window.answerReceived(first: 2, last: 4) == .answered(first: 2, last: 4, sentAt: [200, 300, 400]))
        #expect(window.inFlight == 0)
    }

    @Test func anAnswerThatSkipsTheOldestIsUnexpected() {
        var window = SendWindow(window: 8)
        for now: UInt64 in 1...3 {
            _ = window.messageSent(now: now)
        }
        guard case .unexpected(let message) = window.answerReceived(first: 2, last: 2) else {
            Issue.record("out-of-order answer was accepted")
            return
        }
        #expect(message.contains("1"))
        // Nothing was consumed by the rejected answer.
        #expect(window.inFlight == 3)
        #expect(window.answerReceived(first: 1, last: 3) == .answered(first: 1, last: 3, sentAt: [1, 2, 3]))
    }

    @Test func answersBeyondWhatWasSentOrWithNothingInFlightAreUnexpected() {
        var window = SendWindow(window: 8)
        #expect(isUnexpected(window.answerReceived(first: 1, last: 1)))
        _ = window.messageSent(now: 0)
        _ = window.messageSent(now: 0)
        #expect(isUnexpected(window.answerReceived(first: 1, last: 3)))
        #expect(isUnexpected(window.answerReceived(first: 0, last: 1)))
        #expect(isUnexpected(window.answerReceived(first: 2, last: 1)))
        #expect(window.answerReceived(first: 1, last: 2) == .answered(first: 1, last: 2, sentAt: [0, 0]))
        #expect(isUnexpected(window.answerReceived(first: 1, last: 2)))
    }

    @Test func isFinishedOnlyAfterFinishInputAndEveryAnswer() {
        var window = SendWindow(window: 4)
        #expect(!window.isFinished)
        _ = window.messageSent(now: 0)
        _ = window.messageSent(now: 0)
        _ = window.answerReceived(first: 1, last: 2)
        #expect(!window.isFinished, "all answered but more input may come")
        _ = window.messageSent(now: 0)
        window.finishInput()
        #expect(!window.isFinished, "input done but message 3 is in flight")
        _ = window.answerReceived(first: 3, last: 3)
        #expect(window.isFinished)
    }

    @Test func emptyInputFinishesAtOnce() {
        var window = SendWindow(window: 4)
        window.finishInput()
        #expect(window.isFinished)
        #expect(window.sentCount == 0)
    }

    @Test func tenThousandMessagesAckedInRunsNeverExceedTheWindow() {
        var window = SendWindow(window: 100)
        var answered: [UInt64] = []
        var runLength: UInt64 = 1
        let total: UInt64 = 10_000
        while !window.isFinished {
            while window.canSend && window.sentCount < total {
                let id = window.messageSent(now: window.sentCount + 1)
                #expect(window.inFlight <= 100, "id \(id)")
            }
            if window.sentCount == total { window.finishInput() }
            let first = window.sentCount - UInt64(window.inFlight) + 1
            let last = min(first + runLength - 1, window.sentCount)
            guard case .answered(_, _, let sentAt) = window.answerReceived(first: first, last: last) else {
                Issue.record("run \(first)...\(last) was refused")
                return
            }
            answered.append(contentsOf: sentAt)
            runLength = runLength % 37 + 1
        }
        // Each message's send time was its id, so the answered times must be 1...total in order.
        #expect(answered == Array(1...total))
    }

    @Test func sendTimesSurviveCompactionOfTheQueue() {
        var window = SendWindow(window: 100)
        var expectedNextTime: UInt64 = 1
        var sent: UInt64 = 0
        while sent < 10_000 || window.inFlight > 0 {
            while window.canSend && sent < 10_000 {
                sent += 1
                #expect(window.messageSent(now: sent * 10) == sent)
            }
            // Answer in runs of up to 30, leaving some in flight across compactions.
            let first = sent - UInt64(window.inFlight) + 1
            let last = min(first + UInt64(first % 30), sent)
            guard case .answered(_, _, let sentAt) = window.answerReceived(first: first, last: last) else {
                Issue.record("run \(first)...\(last) was refused")
                return
            }
            #expect(sentAt == (first...last).map { $0 * 10 })
            expectedNextTime = last + 1
        }
        #expect(expectedNextTime == 10_001)
        #expect(window.sentCount == 10_000)
    }

    private func isUnexpected(_ action: SendWindow.AnswerAction) -> Bool {
        if case .unexpected = action { return true }
        return false
    }
}
