import NIOCore
import Testing

@testable import XferProtocol

/// Drives the server's per-connection state machine directly, with no channel: handshakes, numbering, closing.
@Suite struct ServerConnectionStateMachineTests {
    static func isKnown(_ name: String) -> Bool { name == "Europe/Paris" }

    static func connectedXfer(_ fields: [String: String]) -> ServerConnectionStateMachine {
        var machine = ServerConnectionStateMachine(mode: .xfer)
        _ = machine.controlReceived(.hello(fields), isKnownZone: isKnown)
        return machine
    }

    // MARK: Plain clients

    @Test func plainClientsFirstTextIsTheTimezone() {
        var machine = ServerConnectionStateMachine(mode: .plain)
        #expect(!machine.isOpen)
        #expect(machine.session == nil)
        let action = machine.textReceived("Europe/Paris", isKnownZone: Self.isKnown)
        let session = ServerConnectionStateMachine.Session(
            timezone: "Europe/Paris",
            role: .plain,
            name: nil,
            relayTo: nil,
            relayToAll: false
        )
        #expect(action == .connected(session))
        #expect(machine.isOpen)
        #expect(machine.session == session)
    }

    @Test func plainTimezoneIsCanonicalised() {
        var machine = ServerConnectionStateMachine(mode: .plain)
        guard case .connected(let session) = machine.textReceived("Z", isKnownZone: Self.isKnown) else {
            Issue.record("Z was refused")
            return
        }
        #expect(session.timezone == "UTC")
    }

    @Test func plainBadTimezoneFailsWithBadTimezone() {
        var machine = ServerConnectionStateMachine(mode: .plain)
        guard case .fail(let code, let message) = machine.textReceived("hello there", isKnownZone: Self.isKnown) else {
            Issue.record("a bad timezone was accepted")
            return
        }
        #expect(code == .badTimezone)
        #expect(XferError.closeCode(for: code) == 1008)
        #expect(message.contains("Europe/Paris"))
        #expect(!machine.isOpen)
    }

    @Test func plainTextsAfterTheTimezoneAreNumberedFromOne() {
        var machine = ServerConnectionStateMachine(mode: .plain)
        _ = machine.textReceived("UTC", isKnownZone: Self.isKnown)
        let session = machine.session!
        for id: UInt64 in 1...3 {
            #expect(
                machine.textReceived("message \(id)", isKnownZone: Self.isKnown) == .message(id: id, session: session)
            )
        }
        // Text that looks like a timezone is just a message once the handshake is done.
        #expect(machine.textReceived("UTC", isKnownZone: Self.isKnown) == .message(id: 4, session: session))
    }

    @Test func plainClientsCannotSendBinaryMessages() {
        var machine = ServerConnectionStateMachine(mode: .plain)
        guard
            case .fail(.protocolError, _) = machine.controlReceived(
                .hello(["timezone": "UTC"]),
                isKnownZone: Self.isKnown
            )
        else {
            Issue.record("a plain client's hello was accepted")
            return
        }
    }

    // MARK: xfer clients

    @Test func xferHelloCompletesTheHandshakeWithDefaultRoleSend() {
        var machine = ServerConnectionStateMachine(mode: .xfer)
        let action = machine.controlReceived(.hello(["timezone": "+05:30"]), isKnownZone: Self.isKnown)
        let session = ServerConnectionStateMachine.Session(
            timezone: "+05:30",
            role: .send,
            name: nil,
            relayTo: nil,
            relayToAll: false
        )
        #expect(action == .connected(session))
        #expect(machine.textReceived("first", isKnownZone: Self.isKnown) == .message(id: 1, session: session))
        #expect(machine.textReceived("second", isKnownZone: Self.isKnown) == .message(id: 2, session: session))
    }

    @Test func xferTextBeforeHelloIsAProtocolError() {
        var machine = ServerConnectionStateMachine(mode: .xfer)
        guard case .fail(let code, _) = machine.textReceived("UTC", isKnownZone: Self.isKnown) else {
            Issue.record("text before hello was accepted")
            return
        }
        #expect(code == .protocolError)
    }

    @Test func xferFirstMessageMustBeHello() {
        var machine = ServerConnectionStateMachine(mode: .xfer)
        guard
            case .fail(.protocolError, _) = machine.controlReceived(.ack(first: 1, last: 1), isKnownZone: Self.isKnown)
        else {
            Issue.record("ack before hello was accepted")
            return
        }
    }

    @Test func xferHelloWithBadOrMissingTimezoneFailsWithBadTimezone() {
        for fields in [["timezone": "Nowhere/Else"], [:], ["timezone": "+15:00"]] {
            var machine = ServerConnectionStateMachine(mode: .xfer)
            guard case .fail(let code, _) = machine.controlReceived(.hello(fields), isKnownZone: Self.isKnown) else {
                Issue.record("hello \(fields) was accepted")
                continue
            }
            #expect(code == .badTimezone)
        }
    }

    @Test(arguments: ["admin", "", "SEND", "upload "])
    func xferHelloWithUnknownRoleIsAProtocolError(_ role: String) {
        var machine = ServerConnectionStateMachine(mode: .xfer)
        let action = machine.controlReceived(.hello(["timezone": "UTC", "role": role]), isKnownZone: Self.isKnown)
        guard case .fail(.protocolError, _) = action else {
            Issue.record("role \"\(role)\" was accepted")
            return
        }
        #expect(!machine.isOpen)
    }

    @Test(arguments: ["has space", "a/b", "ünï", "x\n", String(repeating: "n", count: 129)])
    func xferHelloWithBadListenerNameIsAProtocolError(_ name: String) {
        var machine = ServerConnectionStateMachine(mode: .xfer)
        let fields = ["timezone": "UTC", "role": "listen", "name": name]
        guard case .fail(.protocolError, _) = machine.controlReceived(.hello(fields), isKnownZone: Self.isKnown) else {
            Issue.record("name \"\(name)\" was accepted")
            return
        }
    }

    @Test func listenerNamesAllowLettersDigitsAndDotUnderscoreDashAt() {
        #expect(Hello.isValidName("ops.team_1-a@host"))
        #expect(Hello.isValidName(String(repeating: "n", count: 128)))
        #expect(!Hello.isValidName(""))
        #expect(!Hello.isValidName(String(repeating: "n", count: 129)))
    }

    @Test func xferListenerHelloCarriesItsName() {
        let machine = Self.connectedXfer(["timezone": "Europe/Paris", "role": "listen", "name": "ops"])
        #expect(machine.session?.role == .listen)
        #expect(machine.session?.name == "ops")
        #expect(machine.session?.relayTo == nil)
    }

    @Test func xferEmptyNameAndEmptyToMeanNone() {
        let machine = Self.connectedXfer(["timezone": "UTC", "role": "listen", "name": "", "to": ""])
        #expect(machine.session?.name == nil)
        #expect(machine.session?.relayTo == nil)
        #expect(machine.session?.relayToAll == false)
    }

    @Test func xferHelloWithToSetsTheRelayTarget() {
        let machine = Self.connectedXfer(["timezone": "UTC", "role": "send", "to": "ops"])
        #expect(machine.session?.relayTo == "ops")
        #expect(machine.session?.relayToAll == false)
    }

    @Test func xferHelloWithAllOneRelaysToEveryListener() {
        #expect(Self.connectedXfer(["timezone": "UTC", "all": "1"]).session?.relayToAll == true)
        #expect(Self.connectedXfer(["timezone": "UTC", "all": "0"]).session?.relayToAll == false)
        #expect(Self.connectedXfer(["timezone": "UTC", "all": "true"]).session?.relayToAll == false)
    }

    @Test func xferSecondHelloIsAProtocolError() {
        var machine = Self.connectedXfer(["timezone": "UTC"])
        guard
            case .fail(.protocolError, _) = machine.controlReceived(
                .hello(["timezone": "UTC"]),
                isKnownZone: Self.isKnown
            )
        else {
            Issue.record("a second hello was accepted")
            return
        }
    }

    @Test func xferClientErrorMessageIsIgnoredUntilItsCloseFrame() {
        var machine = Self.connectedXfer(["timezone": "UTC"])
        #expect(
            machine.controlReceived(.error(code: "input_unreadable", message: "x"), isKnownZone: Self.isKnown)
                == .ignore
        )
        #expect(machine.isOpen)
    }

    // MARK: Uploads

    @Test func uploadMessagesOnAnUploadConnectionGoToTheUploadReceiver() {
        var machine = Self.connectedXfer(["timezone": "UTC", "role": "upload"])
        let block = WireMessage.Block(
            offset: 0,
            rawLength: 1,
            crc32: 0,
            encoding: .raw,
            payload: ByteBuffer(bytes: [1])
        )
        let messages: [WireMessage] = [
            .offer(["upload": "u", "name": "a"]), .block(block),
            .finish(size: 1, sha256: [UInt8](repeating: 0, count: 32)),
        ]
        for message in messages {
            #expect(machine.controlReceived(message, isKnownZone: Self.isKnown) == .upload(message))
        }
        #expect(machine.isOpen)
    }

    @Test func serverToClientUploadMessagesFromAClientAreAProtocolError() {
        var machine = Self.connectedXfer(["timezone": "UTC", "role": "upload"])
        guard case .fail(.protocolError, _) = machine.controlReceived(.accept(offset: 0), isKnownZone: Self.isKnown)
        else {
            Issue.record("an accept from a client was taken")
            return
        }
    }

    @Test func uploadMessagesOnASendConnectionAreAProtocolError() {
        var machine = Self.connectedXfer(["timezone": "UTC", "role": "send"])
        guard case .fail(.protocolError, _) = machine.controlReceived(.offer(["name": "a"]), isKnownZone: Self.isKnown)
        else {
            Issue.record("an offer on a send connection was taken")
            return
        }
    }

    // MARK: Closing

    @Test func peerInitiatedCloseIsEchoedWithItsCode() {
        var machine = ServerConnectionStateMachine(mode: .plain)
        _ = machine.textReceived("UTC", isKnownZone: Self.isKnown)
        #expect(machine.closeReceived(code: 1000) == .echoAndClose(code: 1000))
        #expect(!machine.isOpen)
        #expect(machine.closeReceived(code: 1000) == .ignore)
    }

    @Test func peerCloseWithoutBodyIsEchoedWithoutCode() {
        var machine = ServerConnectionStateMachine(mode: .xfer)
        #expect(machine.closeReceived(code: nil) == .echoAndClose(code: nil))
    }

    @Test func closeBeforeTheHandshakeIsEchoed() {
        var machine = ServerConnectionStateMachine(mode: .plain)
        #expect(machine.closeReceived(code: 1001) == .echoAndClose(code: 1001))
    }

    @Test func closeAfterWeSentOursClosesTheSocket() {
        var machine = ServerConnectionStateMachine(mode: .plain)
        _ = machine.textReceived("UTC", isKnownZone: Self.isKnown)
        machine.closeSent()
        #expect(!machine.isOpen)
        #expect(machine.session == nil)
        #expect(machine.closeReceived(code: 1008) == .closeSocket)
        #expect(machine.closeReceived(code: 1008) == .ignore)
    }

    @Test func closeAfterTheSocketClosedIsIgnored() {
        var machine = ServerConnectionStateMachine(mode: .xfer)
        machine.channelInactive()
        #expect(machine.closeReceived(code: 1000) == .ignore)
    }

    @Test func lateFramesWhileClosingAreIgnored() {
        var machine = Self.connectedXfer(["timezone": "UTC"])
        machine.closeSent()
        machine.closeSent()  // a second close (e.g. shutdown after an error) changes nothing
        #expect(machine.textReceived("late", isKnownZone: Self.isKnown) == .ignore)
        #expect(machine.controlReceived(.hello(["timezone": "UTC"]), isKnownZone: Self.isKnown) == .ignore)
        _ = machine.closeReceived(code: 1000)
        #expect(machine.textReceived("later", isKnownZone: Self.isKnown) == .ignore)
        #expect(machine.controlReceived(.ack(first: 1, last: 1), isKnownZone: Self.isKnown) == .ignore)
    }

    @Test func handshakeFramesWhileClosingBeforeHandshakeAreIgnored() {
        var machine = ServerConnectionStateMachine(mode: .plain)
        machine.closeSent()
        #expect(machine.textReceived("UTC", isKnownZone: Self.isKnown) == .ignore)
        #expect(!machine.isOpen)
    }
}
