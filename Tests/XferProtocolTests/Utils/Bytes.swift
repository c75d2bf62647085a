import NIOCore
import XferProtocol

/// The bytes spelled by `text`, two hex digits per byte; spaces are ignored so that fields can be grouped.
func hex(_ text: String) -> [UInt8] {
    let digits = Array(text.unicodeScalars.filter { $0 != " " })
    precondition(digits.count % 2 == 0, "odd number of hex digits in \"\(text)\"")
    return stride(from: 0, to: digits.count, by: 2).map { index in
        UInt8(String(String.UnicodeScalarView(digits[index..<index + 2])), radix: 16)!
    }
}

/// The encoded frame payload of `message`, as bytes.
func encodedBytes(_ message: WireMessage) -> [UInt8] {
    var buffer = message.encoded()
    return buffer.readBytes(length: buffer.readableBytes)!
}

/// The error `WireMessage.decode` throws for `bytes`, or nil when they decode.
func decodeError(_ bytes: [UInt8], limits: WireMessage.Limits = WireMessage.Limits()) -> XferError? {
    do {
        _ = try WireMessage.decode(ByteBuffer(bytes: bytes), limits: limits)
        return nil
    } catch {
        return error
    }
}

/// `bytes` decoded, or nil when decoding throws.
func decoded(_ bytes: [UInt8]) -> WireMessage? {
    try? WireMessage.decode(ByteBuffer(bytes: bytes))
}

/// The bytes of a UTF-8 string prefixed with its 16-bit big-endian length, as the wire format writes strings.
func shortString(_ bytes: [UInt8]) -> [UInt8] {
    [UInt8(bytes.count >> 8), UInt8(bytes.count & 0xFF)] + bytes
}
