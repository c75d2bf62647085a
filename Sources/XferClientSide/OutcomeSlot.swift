import NIOCore
import NIOSSL
import NIOWebSocket
import Synchronization
import XferEvents
import XferProtocol

/// Completes a promise once, whichever of several places (and threads) learns the outcome first.
final class OutcomeSlot: Sendable {
    private let promise: EventLoopPromise<ClientOutcome>
    private let done = Atomic<Bool>(false)

    init(promise: EventLoopPromise<ClientOutcome>) {
        self.promise = promise
    }

    var futureResult: EventLoopFuture<ClientOutcome> { self.promise.futureResult }

    func complete(_ outcome: ClientOutcome) {
        guard !self.done.exchange(true, ordering: .acquiringAndReleasing) else { return }
        self.promise.succeed(outcome)
    }
}
