import Testing

@testable import XferProtocol

/// The typed `hello`: what a client builds is what the server reads, and every field rule in one place.
@Suite struct HelloTests {
    static func known(_ zone: String) -> Bool { zone == "Europe/Paris" }

    @Test func fieldsRoundTrip() throws {
        let hello = Hello(
            timezone: "Europe/Paris",
            role: .listen,
            name: "ops",
            relayTo: nil,
            relayToAll: false,
            client: "xfer/1.0"
        )
        #expect(hello.fields == ["timezone": "Europe/Paris", "role": "listen", "name": "ops", "client": "xfer/1.0"])
        #expect(try Hello(fields: hello.fields, isKnownZone: Self.known) == hello)
        let sender = Hello(timezone: "UTC", role: .send, relayToAll: true)
        #expect(sender.fields["all"] == "1")
        #expect(try Hello(fields: sender.fields, isKnownZone: Self.known) == sender)
    }

    @Test func aHelloWithoutRoleIsASender() throws {
        #expect(try Hello(fields: ["timezone": "UTC"], isKnownZone: Self.known).role == .send)
    }

    @Test(arguments: ["plain", "admin", "Listen"])
    func rolesOutsideTheProtocolAreRefused(_ role: String) {
        #expect(throws: XferError.self) {
            try Hello(fields: ["timezone": "UTC", "role": role], isKnownZone: Self.known)
        }
    }

    @Test func emptyNameAndTargetMeanNone() throws {
        let hello = try Hello(fields: ["timezone": "UTC", "name": "", "to": ""], isKnownZone: Self.known)
        #expect(hello.name == nil)
        #expect(hello.relayTo == nil)
    }

    @Test func onlyListenersAndPlainClientsReceiveTexts() {
        #expect(ClientKind.allCases.filter(\.receivesTexts) == [.listen, .plain])
    }
}
