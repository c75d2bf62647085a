/// Lowercase hexadecimal, as SHA-256 digests and upload ids travel in events and messages.
public enum Hex {
    /// `bytes` as lowercase hex digits, two per byte.
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
