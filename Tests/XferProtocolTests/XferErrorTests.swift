import Testing
import XferProtocol

/// Pins the one mapping from error codes to exit statuses (xfer(1)) and WebSocket close codes (RFC 6455 7.4.1).
@Suite struct XferErrorTests {
    static let exitStatuses: [(XferError.Code, Int32)] = [
        (.usage, 64), (.badTimezone, 64),
        (.rejected, 65), (.noListener, 65), (.invalidUTF8, 65), (.messageTooLarge, 65), (.protocolError, 65),
        (.inputUnreadable, 66),
        (.serverUnreachable, 69), (.connectionLost, 69), (.timeout, 69), (.handshakeTimeout, 69),
        (.serverFull, 75), (.shutdown, 75),
        (.unauthorized, 77), (.tlsVerificationFailed, 77), (.tlsFailed, 69),
        (.internalError, 70), (.badCommand, 70), (XferError.Code(rawValue: "something_new"), 70),
        // Uploads: refused content is 65, a full or failing server is worth retrying (75).
        (.corruptBlock, 65), (.checksumFailed, 65), (.integrityFailed, 65), (.fileTooLarge, 65), (.badName, 65),
        (.diskFull, 75), (.storageFailed, 75), (.superseded, 75), (.replayWindowExceeded, 69),
        (.busy, 75),
    ]

    static let closeCodes: [(XferError.Code, UInt16)] = [
        (.invalidUTF8, 1007), (.badTimezone, 1008), (.unauthorized, 1008), (.timeout, 1008),
        (.handshakeTimeout, 1008), (.messageTooLarge, 1009), (.protocolError, 1002), (.shutdown, 1001),
        (.serverFull, 1013), (.internalError, 1011),
        (.superseded, 1008), (.corruptBlock, 1008), (.checksumFailed, 1008), (.integrityFailed, 1008),
        (.fileTooLarge, 1008), (.badName, 1008), (.diskFull, 1011), (.storageFailed, 1011),
        (.busy, 1013),
    ]

    static let inferredCodes: [(UInt16, XferError.Code)] = [
        (1001, .shutdown), (1002, .protocolError), (1007, .invalidUTF8), (1008, .rejected),
        (1009, .messageTooLarge), (1013, .serverFull), (1000, .connectionLost), (1006, .connectionLost),
        (4000, .connectionLost),
    ]

    @Test(arguments: Self.exitStatuses)
    func exitStatusFollowsSysexits(_ code: XferError.Code, _ status: Int32) {
        #expect(XferError.exitStatus(for: code) == status)
        #expect(XferError(code, "m").exitStatus == status)
    }

    @Test(arguments: Self.closeCodes)
    func closeCodeFollowsRFC6455(_ code: XferError.Code, _ closeCode: UInt16) {
        #expect(XferError.closeCode(for: code) == closeCode)
    }

    @Test(arguments: Self.inferredCodes)
    func clientInfersTheCodeFromABareCloseCode(_ closeCode: UInt16, _ code: XferError.Code) {
        #expect(XferError.code(forClose: closeCode) == code)
    }

    @Test func closeCodesSurviveARoundTripForTheCodesThatHaveOne() {
        for code in [XferError.Code.invalidUTF8, .messageTooLarge, .protocolError, .shutdown, .serverFull] {
            #expect(XferError.code(forClose: XferError.closeCode(for: code)) == code)
        }
    }

    @Test func codesAreStableSnakeCaseStrings() {
        let codes: [XferError.Code: String] = [
            .usage: "usage", .badTimezone: "bad_timezone", .unauthorized: "unauthorized",
            .serverUnreachable: "server_unreachable", .connectionLost: "connection_lost",
            .protocolError: "protocol_error", .invalidUTF8: "invalid_utf8", .messageTooLarge: "message_too_large",
            .serverFull: "server_full", .handshakeTimeout: "handshake_timeout", .timeout: "timeout",
            .rejected: "rejected", .noListener: "no_listener", .shutdown: "shutdown",
            .inputUnreadable: "input_unreadable", .badCommand: "bad_command", .internalError: "internal_error",
            .corruptBlock: "corrupt_block", .checksumFailed: "checksum_failed", .integrityFailed: "integrity_failed",
            .fileTooLarge: "file_too_large", .diskFull: "disk_full", .storageFailed: "storage_failed",
            .badName: "bad_name", .replayWindowExceeded: "replay_window_exceeded", .superseded: "superseded",
            .busy: "busy",
        ]
        for (code, raw) in codes {
            #expect(code.rawValue == raw)
            #expect(code.description == raw)
        }
    }

    @Test func descriptionAndLocationNameTheCodeAndTheCaller() {
        let error = XferError(.timeout, "no pong for 60 s")
        #expect(error.description == "timeout: no pong for 60 s")
        #expect(error.location.hasPrefix("XferProtocolTests/XferErrorTests.swift:"))
    }
}
