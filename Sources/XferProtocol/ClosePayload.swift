/// The payload of a WebSocket close frame, checked as RFC 6455 sections 5.5.1, 7.1.5 and 7.4 require.
///
/// Either side parses the close frame it receives with this before it answers: a peer that sends a code that may
/// not appear on the wire, a one-byte payload, or a reason that is not UTF-8 gets a close with 1002 or 1007
/// instead of an echo.
public enum ClosePayload: Equatable, Sendable {
    /// A well-formed close: `code` is nil for an empty payload (the peer gave no status, section 7.1.5).
    case valid(code: UInt16?, reason: String)
    /// A malformed close: answer with the close code of `code` (`protocol_error` 1002, `invalid_utf8` 1007).
    case invalid(XferError.Code, String)

    /// Parses the (unmasked) payload of a close frame.
    public static func parse<Bytes: Collection>(_ payload: Bytes) -> ClosePayload where Bytes.Element == UInt8 {
        if payload.isEmpty { return .valid(code: nil, reason: "") }
        guard payload.count >= 2 else {
            // Section 5.5.1: a body starts with a 2-byte status code; one byte cannot be one.
            return .invalid(.protocolError, "close frame with a 1-byte payload (RFC 6455 section 5.5.1)")
        }
        let first = payload.first!
        let second = payload[payload.index(after: payload.startIndex)]
        let code = UInt16(first) << 8 | UInt16(second)
        guard Self.mayBeSent(code) else {
            return .invalid(.protocolError, "close code \(code) may not be sent (RFC 6455 section 7.4)")
        }
        guard let reason = String(validating: payload.dropFirst(2), as: UTF8.self) else {
            // Section 5.5.1: the reason is UTF-8; section 8.1: invalid UTF-8 fails the connection with 1007.
            return .invalid(.invalidUTF8, "close reason is not valid UTF-8 (RFC 6455 section 5.5.1)")
        }
        return .valid(code: code, reason: reason)
    }

    /// Whether `code` may travel in a close frame: 1000-1003 and 1007-1014 (RFC 6455 section 7.4.1 and the IANA
    /// registry), and 3000-4999 (registered and private use, section 7.4.2). 1005, 1006 and 1015 only report what
    /// happened locally and never go on the wire; 1004 and the rest below 3000 are reserved.
    public static func mayBeSent(_ code: UInt16) -> Bool {
        switch code {
        case 1000...1003, 1007...1014, 3000...4999: return true
        default: return false
        }
    }
}
