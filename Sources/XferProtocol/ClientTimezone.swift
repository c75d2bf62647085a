/// Validates the timezone a client sends as its first message.
///
/// Accepted forms (see xfer-protocol(7)): `UTC`, a UTC offset `+hh:mm` / `-hh:mm` (hours 00-14, minutes 00-59),
/// or an IANA zone name such as `Europe/Paris`. Whether an IANA name exists depends on the zone database, which
/// is I/O, so the caller passes `isKnownZone`.
public enum ClientTimezone {
    /// The longest IANA name accepted; the longest in tzdata 2025b is 32 bytes.
    public static let maxLength = 64

    /// Returns the canonical form of `text`, or throws `bad_timezone` with a message that lists what is accepted.
    public static func validate(_ text: String, isKnownZone: (String) -> Bool) throws(XferError) -> String {
        if text == "UTC" || text == "Z" { return "UTC" }
        if let offset = Self.parseOffset(text) { return offset }
        let bytes = Array(text.utf8)
        let syntaxOK =
            !bytes.isEmpty && bytes.count <= Self.maxLength
            && bytes.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                    UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "/"), UInt8(ascii: "_"), UInt8(ascii: "-"),
                    UInt8(ascii: "+"):
                    return true
                default:
                    return false
                }
            }
            && bytes.first.map { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") } == true
            && !text.contains("..") && !text.hasSuffix("/")
        if syntaxOK && isKnownZone(text) { return text }
        let shown = text.count > 40 ? String(text.prefix(40)) + "..." : text
        throw XferError(
            .badTimezone,
            "timezone \"\(shown)\" is not valid: send an IANA name such as Europe/Paris, UTC, or an offset such as +05:30"
        )
    }

    /// Parses `+hh:mm` or `-hh:mm`; returns nil for anything else.
    static func parseOffset(_ text: String) -> String? {
        let bytes = Array(text.utf8)
        guard bytes.count == 6, bytes[0] == UInt8(ascii: "+") || bytes[0] == UInt8(ascii: "-"),
            bytes[3] == UInt8(ascii: ":")
        else { return nil }
        func digit(_ byte: UInt8) -> Int? {
            byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") ? Int(byte - UInt8(ascii: "0")) : nil
        }
        guard let h1 = digit(bytes[1]), let h2 = digit(bytes[2]), let m1 = digit(bytes[4]), let m2 = digit(bytes[5])
        else { return nil }
        let hours = h1 * 10 + h2
        let minutes = m1 * 10 + m2
        guard hours <= 14, minutes <= 59, !(hours == 14 && minutes > 0) else { return nil }
        return text
    }
}
