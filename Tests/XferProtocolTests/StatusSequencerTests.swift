import Testing

@testable import XferProtocol

/// Statuses leave in message order whatever order routing answers come in.
@Suite struct StatusSequencerTests {
    static func relayed(_ id: UInt64, delivered: UInt32 = 1) -> WireMessage.Status {
        .init(id: id, ok: true, relayed: true, delivered: delivered)
    }

    @Test func emittedMessagesAreAcknowledgedAtOnceWhenNothingWaits() {
        var sequencer = StatusSequencer()
        #expect(sequencer.emitted(id: 1) == .ok(1))
        #expect(sequencer.emitted(id: 2) == .ok(2))
        #expect(sequencer.isEmpty)
    }

    @Test func answersInAnyOrderReleaseStatusesInMessageOrder() {
        var sequencer = StatusSequencer()
        sequencer.relayed(id: 1)
        sequencer.relayed(id: 2)
        #expect(sequencer.emitted(id: 3) == nil)
        sequencer.relayed(id: 4)
        #expect(sequencer.routed(Self.relayed(2)).isEmpty)
        #expect(sequencer.routed(Self.relayed(4)).isEmpty)
        #expect(
            sequencer.routed(Self.relayed(1)) == [
                .status(Self.relayed(1)), .status(Self.relayed(2)), .ok(3), .status(Self.relayed(4)),
            ]
        )
        #expect(sequencer.isEmpty)
        #expect(sequencer.emitted(id: 5) == .ok(5))
    }

    @Test func anAnswerReleasesOnlyUpToTheNextUnansweredMessage() {
        var sequencer = StatusSequencer()
        sequencer.relayed(id: 1)
        #expect(sequencer.emitted(id: 2) == nil)
        sequencer.relayed(id: 3)
        #expect(sequencer.emitted(id: 4) == nil)
        #expect(sequencer.routed(Self.relayed(1)) == [.status(Self.relayed(1)), .ok(2)])
        #expect(!sequencer.isEmpty)
        #expect(sequencer.routed(Self.relayed(3)) == [.status(Self.relayed(3)), .ok(4)])
    }

    @Test func anAnswerForNoWaitingMessageReleasesNothing() {
        var sequencer = StatusSequencer()
        #expect(sequencer.routed(Self.relayed(9)).isEmpty)
        sequencer.relayed(id: 1)
        #expect(sequencer.routed(Self.relayed(1)).count == 1)
        #expect(sequencer.routed(Self.relayed(1)).isEmpty, "a second answer for the same message")
    }
}
