import Testing

@testable import XferProtocol

/// Drives the routing decisions with a clock passed in: names, `seq`, held texts and expiry, without sockets or
/// sleeping.
@Suite struct RoutingTableTests {
    static let second: UInt64 = 1_000_000_000

    @Test func aNameNobodyUsedIsUnknown() {
        var table = RoutingTable(holdSeconds: 60, maxHeldPerName: 10)
        #expect(table.route("hi", from: "a", to: .name("ops"), now: 0) == .unknownTarget)
        #expect(table.route("hi", from: "a", to: .client(1), now: 0) == .unknownTarget)
        #expect(
            table.route("hi", from: "a", to: .allListeners, now: 0)
                == .deliver([], result: .init(delivered: 0, held: 0))
        )
    }

    @Test func sendersAndUploadersNeverJoin() {
        var table = RoutingTable(holdSeconds: 60, maxHeldPerName: 10)
        #expect(table.joined(client: 1, kind: .send, name: "ops", now: 0).deliveries.isEmpty)
        #expect(table.joined(client: 2, kind: .upload, name: nil, now: 0).deliveries.isEmpty)
        #expect(table.route("x", from: "a", to: .name("ops"), now: 0) == .unknownTarget)
        #expect(table.route("x", from: "a", to: .client(2), now: 0) == .unknownTarget)
    }

    @Test func everyListenerOfANameGetsTheSameSeqInOrder() {
        var table = RoutingTable(holdSeconds: 60, maxHeldPerName: 10)
        _ = table.joined(client: 1, kind: .listen, name: "ops", now: 0)
        _ = table.joined(client: 2, kind: .listen, name: "ops", now: 0)
        guard case .deliver(let first, let result) = table.route("one", from: "a", to: .name("ops"), now: 1) else {
            Issue.record("not delivered")
            return
        }
        #expect(result == RelayResult(delivered: 2, held: 0))
        #expect(Set(first.map(\.client)) == [1, 2])
        #expect(first.allSatisfy { $0.seq == 1 && $0.text == "one" && $0.from == "a" })
        guard case .deliver(let second, _) = table.route("two", from: "b", to: .client(2), now: 2) else {
            Issue.record("not delivered")
            return
        }
        // By id, a named listener still counts in its name's sequence.
        #expect(second == [RoutingTable.Delivery(client: 2, seq: 2, from: "b", text: "two")])
    }

    @Test func textsAreHeldWhileANameIsAwayAndDeliveredInOrderOnReturn() {
        var table = RoutingTable(holdSeconds: 60, maxHeldPerName: 10)
        _ = table.joined(client: 1, kind: .listen, name: "ops", now: 0)
        table.left(client: 1, now: 1 * Self.second)
        for text in ["one", "two"] {
            #expect(
                table.route(text, from: "a", to: .name("ops"), now: 2 * Self.second)
                    == .deliver([], result: RelayResult(delivered: 0, held: 1))
            )
        }
        #expect(table.heldCount(for: "ops") == 2)
        let held = table.joined(client: 7, kind: .listen, name: "ops", now: 3 * Self.second).deliveries
        #expect(held.map(\.seq) == [1, 2])
        #expect(held.map(\.text) == ["one", "two"])
        #expect(held.allSatisfy { $0.client == 7 })
        #expect(table.heldCount(for: "ops") == 0)
    }

    @Test func aNameIsForgottenOnceTheHoldPeriodIsOver() {
        var table = RoutingTable(holdSeconds: 5, maxHeldPerName: 10)
        _ = table.joined(client: 1, kind: .listen, name: "ops", now: 0)
        table.left(client: 1, now: 10 * Self.second)
        #expect(table.route("x", from: "a", to: .name("ops"), now: 14 * Self.second) != .unknownTarget)
        #expect(table.route("y", from: "a", to: .name("ops"), now: 16 * Self.second) == .unknownTarget)
    }

    @Test func heldTextsExpireAndTheOldestGoFirstBeyondTheLimit() {
        var table = RoutingTable(holdSeconds: 5, maxHeldPerName: 2)
        _ = table.joined(client: 1, kind: .listen, name: "ops", now: 0)
        table.left(client: 1, now: 0)
        for (index, text) in ["one", "two", "three"].enumerated() {
            _ = table.route(text, from: "a", to: .name("ops"), now: UInt64(index) * Self.second)
        }
        #expect(table.heldCount(for: "ops") == 2)
        // "two" was held at 1 s and is 6 s old at 7 s: expired; "three" (2 s) is 5 s old: kept.
        let held = table.joined(client: 2, kind: .listen, name: "ops", now: 7 * Self.second).deliveries
        #expect(held.map(\.text) == ["three"])
        #expect(held.map(\.seq) == [3])
    }

    @Test func anUnnamedReceiverIsForgottenWhenItLeaves() {
        var table = RoutingTable(holdSeconds: 60, maxHeldPerName: 10)
        _ = table.joined(client: 4, kind: .plain, name: nil, now: 0)
        #expect(
            table.route("x", from: "a", to: .allListeners, now: 0)
                == .deliver([.init(client: 4, seq: 1, from: "a", text: "x")], result: .init(delivered: 1, held: 0))
        )
        table.left(client: 4, now: 0)
        #expect(table.route("y", from: "a", to: .client(4), now: 0) == .unknownTarget)
        #expect(
            table.route("y", from: "a", to: .allListeners, now: 0) == .deliver([], result: .init(delivered: 0, held: 0))
        )
    }

    @Test func aListenerResumingAfterItsSeqGetsEveryHeldTextAfterItOnce() {
        var table = RoutingTable(holdSeconds: 60, maxHeldPerName: 10)
        _ = table.joined(client: 1, kind: .listen, name: "ops", now: 0)
        for text in ["one", "two", "three"] {
            _ = table.route(text, from: "a", to: .name("ops"), now: 1)
        }
        table.left(client: 1, now: 2)
        _ = table.route("four", from: "a", to: .name("ops"), now: 3)
        // It printed up to 2 before the cut: 3 (delivered, maybe lost in flight) and 4 (held) come again.
        let join = table.joined(client: 2, kind: .listen, name: "ops", since: 2, now: 4)
        #expect(join.missed == nil)
        #expect(join.deliveries.map(\.seq) == [3, 4])
        #expect(join.deliveries.map(\.text) == ["three", "four"])
        #expect(join.deliveries.allSatisfy { $0.client == 2 })
        // The held text was taken: a fresh listener of the name gets nothing old.
        #expect(table.joined(client: 3, kind: .listen, name: "ops", now: 5).deliveries.isEmpty)
    }

    @Test func aListenerThatFellBehindTheHoldIsToldHowManyItMissed() {
        var table = RoutingTable(holdSeconds: 60, maxHeldPerName: 2)
        _ = table.joined(client: 1, kind: .listen, name: "ops", now: 0)
        table.left(client: 1, now: 0)
        for text in ["one", "two", "three", "four", "five"] {
            _ = table.route(text, from: "a", to: .name("ops"), now: 1)
        }
        let join = table.joined(client: 2, kind: .listen, name: "ops", since: 1, now: 2)
        #expect(join.missed?.since == 1)
        #expect(join.missed?.count == 2)
        #expect(join.deliveries.map(\.seq) == [4, 5])
    }

    @Test func aResumeUpToDateGetsNothingAndASeqFromElsewhereJoinsAsNew() {
        var table = RoutingTable(holdSeconds: 60, maxHeldPerName: 10)
        _ = table.joined(client: 1, kind: .listen, name: "ops", now: 0)
        table.left(client: 1, now: 0)
        _ = table.route("one", from: "a", to: .name("ops"), now: 1)
        #expect(table.joined(client: 2, kind: .listen, name: "ops", since: 1, now: 2) == .init(deliveries: []))
        table.left(client: 2, now: 3)
        _ = table.route("two", from: "a", to: .name("ops"), now: 4)
        // 500 was never numbered here: the listener knew another numbering; it gets what is pending, as a new one.
        let join = table.joined(client: 3, kind: .listen, name: "ops", since: 500, now: 5)
        #expect(join.missed == nil)
        #expect(join.deliveries.map(\.text) == ["two"])
    }

    @Test func aForgottenNameContinuesItsNumberingWhenUsedAgain() {
        var table = RoutingTable(holdSeconds: 5, maxHeldPerName: 10)
        _ = table.joined(client: 1, kind: .listen, name: "ops", now: 0)
        _ = table.route("one", from: "a", to: .name("ops"), now: 0)
        table.left(client: 1, now: 0)
        #expect(table.route("lost", from: "a", to: .name("ops"), now: 10 * Self.second) == .unknownTarget)
        _ = table.joined(client: 2, kind: .listen, name: "ops", now: 11 * Self.second)
        guard case .deliver(let deliveries, _) = table.route("two", from: "a", to: .name("ops"), now: 11 * Self.second)
        else {
            Issue.record("not delivered")
            return
        }
        #expect(deliveries.map(\.seq) == [2])
    }

    @Test func textsOfANameThatWentQuietExpireWhenAnyOtherRouteSweeps() {
        var table = RoutingTable(holdSeconds: 5, maxHeldPerName: 100)
        _ = table.joined(client: 1, kind: .listen, name: "quiet", now: 0)
        _ = table.joined(client: 2, kind: .listen, name: "busy", now: 0)
        for _ in 0..<10 { _ = table.route("x", from: "a", to: .name("quiet"), now: 1) }
        #expect(table.keptCount(for: "quiet") == 10)
        // Nobody routes to "quiet" again; traffic for another name sweeps its expired texts away.
        _ = table.route("y", from: "a", to: .name("busy"), now: 7 * Self.second)
        #expect(table.keptCount(for: "quiet") == 0)
    }

    @Test func forgottenNamesKeepTheirNumberingOnlyUpToALimit() {
        var table = RoutingTable(holdSeconds: 0, maxHeldPerName: 1)
        for index in 0..<(RoutingTable.maxRetiredNames + 10) {
            let now = UInt64(index) * 2 * Self.second
            _ = table.joined(client: index, kind: .listen, name: "n\(index)", now: now)
            table.left(client: index, now: now)
        }
        // Each join swept the name before it (hold 0, 2 s later): the retired table stops at its limit.
        #expect(table.retiredCount == RoutingTable.maxRetiredNames)
    }
}
