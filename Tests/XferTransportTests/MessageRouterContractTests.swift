import Dispatch
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import XferProtocol
@testable import XferServerSide

/// An inbox that records what it is handed.
final class RecordingInbox: TextInbox {
    let texts = Mutex<[(seq: UInt64, from: String, text: String)]>([])

    func deliver(seq: UInt64, from: String, text: String) -> Bool {
        self.texts.withLock { $0.append((seq, from, text)) }
        return true
    }

    let missedCounts = Mutex<[(since: UInt64, count: UInt64)]>([])

    func missed(since: UInt64, count: UInt64) {
        self.missedCounts.withLock { $0.append((since, count)) }
    }

    let failures = Mutex<[XferError]>([])

    func fail(_ error: XferError) {
        self.failures.withLock { $0.append(error) }
    }

    var seqs: [UInt64] { self.texts.withLock { $0.map(\.seq) } }
    var bodies: [String] { self.texts.withLock { $0.map(\.text) } }
}

/// What every `MessageRouter` must do, through the protocol only, so that the same tests run against each
/// implementation (today the local one; a router over a bus joins `routers` and must pass them too).
@Suite struct MessageRouterContractTests {
    /// Every implementation, each made fresh with a hold of 60 s and at most 100 held texts per name.
    static let routers: [@Sendable () -> any MessageRouter] = [
        { LocalMessageRouter(holdSeconds: 60, maxHeldPerName: 100) }
    ]

    static func route(_ router: any MessageRouter, _ text: String, to target: RelayTarget) throws -> RelayResult? {
        try router.route(text, from: "tester", to: target, on: EventLoops.shared[0]).wait()
    }

    @Test(arguments: 0..<routers.count)
    func anUnknownTargetIsAnsweredWithNil(_ index: Int) throws {
        let router = Self.routers[index]()
        #expect(try Self.route(router, "x", to: .name("nobody")) == nil)
        #expect(try Self.route(router, "x", to: .client(99)) == nil)
        #expect(try Self.route(router, "x", to: .allListeners) == RelayResult(delivered: 0, held: 0))
    }

    @Test(arguments: 0..<routers.count)
    func listenersOfANameGetEachTextOnceInSeqOrder(_ index: Int) throws {
        let router = Self.routers[index]()
        let first = RecordingInbox()
        let second = RecordingInbox()
        let sender = RecordingInbox()
        router.joined(client: 1, kind: .listen, name: "ops", inbox: first)
        router.joined(client: 2, kind: .listen, name: "ops", inbox: second)
        router.joined(client: 3, kind: .send, name: "ops", inbox: sender)
        for text in ["a", "b", "c"] {
            #expect(try Self.route(router, text, to: .name("ops")) == RelayResult(delivered: 2, held: 0))
        }
        #expect(first.seqs == [1, 2, 3])
        #expect(second.seqs == [1, 2, 3])
        #expect(first.bodies == ["a", "b", "c"])
        #expect(sender.seqs.isEmpty, "senders never receive texts")
    }

    @Test(arguments: 0..<routers.count)
    func textsForANameWhoseListenersLeftAreHeldAndDeliveredOnReturn(_ index: Int) throws {
        let router = Self.routers[index]()
        let before = RecordingInbox()
        router.joined(client: 1, kind: .listen, name: "ops", inbox: before)
        #expect(try Self.route(router, "live", to: .name("ops")) == RelayResult(delivered: 1, held: 0))
        router.left(client: 1)
        #expect(try Self.route(router, "held 1", to: .name("ops")) == RelayResult(delivered: 0, held: 1))
        #expect(try Self.route(router, "held 2", to: .name("ops")) == RelayResult(delivered: 0, held: 1))
        let after = RecordingInbox()
        router.joined(client: 2, kind: .listen, name: "ops", inbox: after)
        #expect(after.seqs == [2, 3])
        #expect(after.bodies == ["held 1", "held 2"])
        #expect(before.seqs == [1])
    }

    @Test(arguments: 0..<routers.count)
    func broadcastsReachEveryReceiverButNotSendersOrUploaders(_ index: Int) throws {
        let router = Self.routers[index]()
        let inboxes = (1...4).map { _ in RecordingInbox() }
        router.joined(client: 1, kind: .listen, name: "ops", inbox: inboxes[0])
        router.joined(client: 2, kind: .plain, name: nil, inbox: inboxes[1])
        router.joined(client: 3, kind: .send, name: nil, inbox: inboxes[2])
        router.joined(client: 4, kind: .upload, name: nil, inbox: inboxes[3])
        #expect(try Self.route(router, "all", to: .allListeners) == RelayResult(delivered: 2, held: 0))
        #expect(inboxes.map(\.bodies) == [["all"], ["all"], [], []])
        #expect(try Self.route(router, "direct", to: .client(2)) == RelayResult(delivered: 1, held: 0))
        #expect(try Self.route(router, "direct", to: .client(3)) == nil)
    }

    @Test(arguments: 0..<routers.count)
    func concurrentSendersToOneNameNeverReorderItsSeq(_ index: Int) throws {
        let router = Self.routers[index]()
        let listener = RecordingInbox()
        router.joined(client: 1, kind: .listen, name: "ops", inbox: listener)
        let loops = EventLoops.shared
        DispatchQueue.concurrentPerform(iterations: 4) { sender in
            for message in 0..<250 {
                _ = try? router.route(
                    "\(sender)-\(message)",
                    from: "sender-\(sender)",
                    to: .name("ops"),
                    on: loops[sender % loops.count]
                ).wait()
            }
        }
        #expect(listener.seqs == Array(1...1000), "each text once, in seq order")
        // Each sender's own texts keep their order too.
        for sender in 0..<4 {
            let own = listener.bodies.filter { $0.hasPrefix("\(sender)-") }
            #expect(own == (0..<250).map { "\(sender)-\($0)" })
        }
    }
}

/// Real event loops for the routing futures, which tests wait on from their own threads.
enum EventLoops {
    static let shared: [EventLoop] = (0..<2).map { _ in NIOSingletons.posixEventLoopGroup.next() }
}
