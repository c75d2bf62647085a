import Foundation
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

@testable import XferClientSide
@testable import XferProtocol
@testable import XferServerSide
@testable import XferTransport

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A server's two connection seams together, as the connection handler uses them: the registry (slots, ids,
/// listing) and the local message router (names, `seq`, held texts), delivering into the peers' channels.
final class Connections {
    let registry = ClientRegistry()
    let router: LocalMessageRouter

    init(holdSeconds: Double = 60, maxHeldPerName: Int = 1000) {
        self.router = LocalMessageRouter(holdSeconds: holdSeconds, maxHeldPerName: maxHeldPerName)
    }

    func relay(_ text: String, from: String, to target: RelayTarget) -> RelayResult? {
        self.router.route(text, from: from, to: target)
    }

    func unregister(id: Int) {
        self.router.left(client: id)
        self.registry.unregister(id: id)
    }

    func reserveSlot(limit: Int) -> Bool { self.registry.reserveSlot(limit: limit) }
    func releaseSlot() { self.registry.releaseSlot() }
    func nextClientID() -> Int { self.registry.nextClientID() }
    func listing() -> [ClientRegistry.ClientInfo] { self.registry.listing() }
    func allChannels() -> [Channel] { self.registry.allChannels() }
    var count: Int { self.registry.count }
}

/// Checks relaying, listener names, held texts and connection slots, with `EmbeddedChannel`s as the clients.
@Suite struct ClientRegistryTests {
    /// One fake connection: its channel receives whatever the registry writes to it.
    final class Peer {
        let id: Int
        let channel = EmbeddedChannel()
        let session: ServerConnectionStateMachine.Session
        let plain: Bool

        init(id: Int, role: String, name: String? = nil, plain: Bool = false) throws {
            self.id = id
            self.plain = plain
            self.session = .init(
                timezone: "UTC",
                role: plain ? .plain : ClientKind(rawValue: role)!,
                name: name,
                relayTo: nil,
                relayToAll: false
            )
            try self.channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 8000)).wait()
        }

        /// Registers this peer, as the connection handler does after the handshake.
        func register(in connections: Connections) {
            #expect(connections.reserveSlot(limit: .max))
            connections.registry.register(
                id: self.id,
                channel: self.channel,
                peer: "peer-\(self.id)",
                session: self.session
            )
            connections.router.joined(
                client: self.id,
                kind: self.session.role,
                name: self.session.name,
                inbox: ChannelInbox(channel: self.channel, plain: self.plain)
            )
        }

        /// The frames the registry wrote to this peer so far.
        func received() throws -> [WebSocketFrame] {
            var frames: [WebSocketFrame] = []
            while let frame = try self.channel.readOutbound(as: WebSocketFrame.self) {
                frames.append(frame)
            }
            return frames
        }

        deinit {
            _ = try? self.channel.finish(acceptAlreadyClosed: true)
        }
    }

    /// The JSON object in a text frame sent to a plain client.
    static func json(_ frame: WebSocketFrame) throws -> [String: Any] {
        let value = try JSONSerialization.jsonObject(with: Data(frame.textValue.utf8))
        return try #require(value as? [String: Any], "not a JSON object: \(frame.textValue)")
    }

    @Test func relayToANameNobodyUsedIsNil() {
        let registry = Connections()
        #expect(registry.relay("hi", from: "a", to: .name("ops")) == nil)
    }

    @Test func relayToAnUnknownClientIsNil() {
        let registry = Connections()
        #expect(registry.relay("hi", from: "a", to: .client(42)) == nil)
    }

    @Test func sendersAreNotListeners() throws {
        let registry = Connections()
        let sender = try Peer(id: 1, role: "send", name: "ops")
        sender.register(in: registry)
        #expect(registry.relay("hi", from: "a", to: .name("ops")) == nil)
        #expect(registry.relay("hi", from: "a", to: .allListeners) == RelayResult(delivered: 0, held: 0))
        #expect(try sender.received().isEmpty)
    }

    @Test func relayToANamedListenerDeliversWithSequenceNumbers() throws {
        let registry = Connections()
        let listener = try Peer(id: 1, role: "listen", name: "ops")
        listener.register(in: registry)
        #expect(registry.relay("one", from: "alice", to: .name("ops")) == RelayResult(delivered: 1, held: 0))
        #expect(registry.relay("two", from: "bob", to: .name("ops")) == RelayResult(delivered: 1, held: 0))
        let frames = try listener.received()
        #expect(frames.allSatisfy { $0.opcode == .binary })
        #expect(
            frames.map(\.message) == [
                .deliver(seq: 1, from: "alice", text: "one"), .deliver(seq: 2, from: "bob", text: "two"),
            ]
        )
    }

    @Test func everyListenerUnderANameGetsTheSameSequenceNumber() throws {
        let registry = Connections()
        let first = try Peer(id: 1, role: "listen", name: "ops")
        let second = try Peer(id: 2, role: "listen", name: "ops")
        first.register(in: registry)
        second.register(in: registry)
        #expect(registry.relay("x", from: "a", to: .name("ops")) == RelayResult(delivered: 2, held: 0))
        #expect(try first.received().map(\.message) == [.deliver(seq: 1, from: "a", text: "x")])
        #expect(try second.received().map(\.message) == [.deliver(seq: 1, from: "a", text: "x")])
    }

    @Test func textsForAListenerThatLeftAreHeldAndDeliveredInOrderWhenItReturns() throws {
        let registry = Connections(holdSeconds: 60)
        let before = try Peer(id: 1, role: "listen", name: "ops")
        before.register(in: registry)
        #expect(registry.relay("zero", from: "a", to: .name("ops")) == RelayResult(delivered: 1, held: 0))
        registry.unregister(id: before.id)

        for text in ["one", "two", "three"] {
            #expect(registry.relay(text, from: "a", to: .name("ops")) == RelayResult(delivered: 0, held: 1))
        }
        let after = try Peer(id: 2, role: "listen", name: "ops")
        after.register(in: registry)
        #expect(
            try after.received().map(\.message) == [
                .deliver(seq: 2, from: "a", text: "one"),
                .deliver(seq: 3, from: "a", text: "two"),
                .deliver(seq: 4, from: "a", text: "three"),
            ]
        )
        // Held texts go out once: a later relay is delivered live, with the next sequence number.
        #expect(registry.relay("four", from: "a", to: .name("ops")) == RelayResult(delivered: 1, held: 0))
        #expect(try after.received().map(\.message) == [.deliver(seq: 5, from: "a", text: "four")])
    }

    @Test func heldTextsBeyondTheLimitDropTheOldest() throws {
        let registry = Connections(holdSeconds: 60, maxHeldPerName: 2)
        let before = try Peer(id: 1, role: "listen", name: "ops")
        before.register(in: registry)
        registry.unregister(id: before.id)
        for text in ["one", "two", "three"] {
            _ = registry.relay(text, from: "a", to: .name("ops"))
        }
        let after = try Peer(id: 2, role: "listen", name: "ops")
        after.register(in: registry)
        // The gap in seq (1 is missing) shows the listener that a text was lost.
        #expect(
            try after.received().map(\.message) == [
                .deliver(seq: 2, from: "a", text: "two"),
                .deliver(seq: 3, from: "a", text: "three"),
            ]
        )
    }

    @Test func aNameIsForgottenAfterTheHoldPeriod() throws {
        let registry = Connections(holdSeconds: 0.02)
        let listener = try Peer(id: 1, role: "listen", name: "ops")
        listener.register(in: registry)
        registry.unregister(id: listener.id)
        usleep(60_000)
        #expect(registry.relay("late", from: "a", to: .name("ops")) == nil)
    }

    @Test func heldTextsExpireAfterTheHoldPeriod() throws {
        let registry = Connections(holdSeconds: 0.05)
        let before = try Peer(id: 1, role: "listen", name: "ops")
        before.register(in: registry)
        registry.unregister(id: before.id)
        #expect(registry.relay("stale", from: "a", to: .name("ops")) == RelayResult(delivered: 0, held: 1))
        usleep(100_000)
        let after = try Peer(id: 2, role: "listen", name: "ops")
        after.register(in: registry)
        #expect(try after.received().isEmpty)
    }

    @Test func plainClientsGetRelayedTextAsAJSONTextFrame() throws {
        let registry = Connections()
        let browser = try Peer(id: 5, role: "plain", plain: true)
        browser.register(in: registry)
        let text = "hello \"ünïcødé\"\n"
        #expect(registry.relay(text, from: "server", to: .client(5)) == RelayResult(delivered: 1, held: 0))
        let frames = try browser.received()
        #expect(frames.map(\.opcode) == [.text])
        // JSON, so that a relayed text can never be mistaken for a status (statuses carry "ok").
        let object = try Self.json(try #require(frames.first))
        #expect(object["text"] as? String == text)
        #expect(object["from"] as? String == "server")
        #expect(object["seq"] as? Int == 1)
        #expect(object["ok"] == nil)
    }

    @Test func relayToASenderOrUploaderByIDIsNil() throws {
        let registry = Connections()
        let sender = try Peer(id: 3, role: "send")
        let uploader = try Peer(id: 4, role: "upload")
        sender.register(in: registry)
        uploader.register(in: registry)
        #expect(registry.relay("direct", from: "server", to: .client(3)) == nil)
        #expect(registry.relay("direct", from: "server", to: .client(4)) == nil)
        #expect(try sender.received().isEmpty)
        #expect(try uploader.received().isEmpty)
    }

    @Test func relayToAListenerByIDUsesItsNamesSequence() throws {
        let registry = Connections()
        let listener = try Peer(id: 3, role: "listen", name: "ops")
        listener.register(in: registry)
        _ = registry.relay("by name", from: "a", to: .name("ops"))
        #expect(registry.relay("by id", from: "b", to: .client(3)) == RelayResult(delivered: 1, held: 0))
        #expect(
            try listener.received().map(\.message) == [
                .deliver(seq: 1, from: "a", text: "by name"), .deliver(seq: 2, from: "b", text: "by id"),
            ]
        )
    }

    @Test func relayToAllReachesListenersAndPlainClientsButNotSenders() throws {
        let registry = Connections()
        let ops = try Peer(id: 1, role: "listen", name: "ops")
        let dev = try Peer(id: 2, role: "listen", name: "dev")
        let browser = try Peer(id: 3, role: "plain", plain: true)
        let sender = try Peer(id: 4, role: "send")
        for peer in [ops, dev, browser, sender] {
            peer.register(in: registry)
        }
        #expect(registry.relay("all", from: "a", to: .allListeners) == RelayResult(delivered: 3, held: 0))
        #expect(try ops.received().count == 1)
        #expect(try dev.received().count == 1)
        #expect(try browser.received().map { try Self.json($0)["text"] as? String } == ["all"])
        #expect(try sender.received().isEmpty)
    }

    @Test func anUnnamedClientIsForgottenWhenItLeaves() throws {
        let registry = Connections()
        let browser = try Peer(id: 1, role: "plain", plain: true)
        browser.register(in: registry)
        registry.unregister(id: 1)
        #expect(registry.relay("gone", from: "a", to: .client(1)) == nil)
        #expect(registry.relay("gone", from: "a", to: .allListeners) == RelayResult(delivered: 0, held: 0))
        #expect(registry.count == 0)
    }

    @Test func reservedSlotsCountAgainstTheConnectionLimit() {
        let registry = Connections()
        #expect(registry.reserveSlot(limit: 2))
        #expect(registry.reserveSlot(limit: 2))
        #expect(!registry.reserveSlot(limit: 2))
        registry.releaseSlot()
        #expect(registry.reserveSlot(limit: 2))
    }

    @Test func registeredClientsCountAgainstTheConnectionLimit() throws {
        let registry = Connections()
        let peer = try Peer(id: 1, role: "send")
        peer.register(in: registry)
        #expect(registry.count == 1)
        #expect(registry.reserveSlot(limit: 2))
        #expect(!registry.reserveSlot(limit: 2))
        registry.unregister(id: 1)
        #expect(registry.reserveSlot(limit: 2))
    }

    @Test func clientIDsAreAssignedInOrder() {
        let registry = Connections()
        #expect((0..<3).map { _ in registry.nextClientID() } == [1, 2, 3])
    }

    @Test func listingIsSortedByID() throws {
        let registry = Connections()
        let peers = try [3, 1, 2].map { try Peer(id: $0, role: "listen", name: "n\($0)") }
        for peer in peers {
            peer.register(in: registry)
        }
        let listing = registry.listing()
        #expect(listing.map(\.id) == [1, 2, 3])
        #expect(listing.map(\.name) == ["n1", "n2", "n3"])
        #expect(listing.map(\.peer) == ["peer-1", "peer-2", "peer-3"])
        #expect(registry.allChannels().count == 3)
    }
}
