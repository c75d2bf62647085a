#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A JSON value that an event field can hold.
///
/// Events are flat objects, so only scalars are needed; `null` is written for `total` when a stream's size is
/// unknown.
public enum JSONScalar: Sendable, Equatable {
    /// A JSON string.
    case string(String)
    /// A JSON integer.
    case int(Int64)
    /// A JSON number with a fraction, written with up to three decimals.
    case double(Double)
    /// `true` or `false`.
    case bool(Bool)
    /// `null`.
    case null
    /// Pre-encoded JSON (an array or object) written as is; the caller guarantees it is valid.
    case raw(String)
}

/// Appends JSON text to a byte buffer without going through `JSONEncoder`.
///
/// `xfer send` and `xfer serve` write one event per text message, so this sits on the hot path: a hand-written
/// encoder is several times faster than `JSONEncoder` and keeps key order fixed (the field order each event
/// declares), which `JSONEncoder` did not on this platform.
public enum JSONLineWriter {
    private static let hex: [UInt8] = Array("0123456789abcdef".utf8)

    /// Appends `string` as a quoted, escaped JSON string (RFC 8259 section 7).
    public static func appendString(_ string: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var string = string
        string.withUTF8 { bytes in
            var runStart = 0
            for index in 0..<bytes.count {
                let byte = bytes[index]
                let escape: UInt8
                switch byte {
                case UInt8(ascii: "\""): escape = UInt8(ascii: "\"")
                case UInt8(ascii: "\\"): escape = UInt8(ascii: "\\")
                case 0x0A: escape = UInt8(ascii: "n")
                case 0x0D: escape = UInt8(ascii: "r")
                case 0x09: escape = UInt8(ascii: "t")
                case 0x00..<0x20, 0x7F: escape = 0
                default: continue
                }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<index]))
                out.append(UInt8(ascii: "\\"))
                if escape != 0 {
                    out.append(escape)
                } else {
                    out.append(contentsOf: [UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0")])
                    out.append(hex[Int(byte >> 4)])
                    out.append(hex[Int(byte & 0xF)])
                }
                runStart = index + 1
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<bytes.count]))
        }
        out.append(UInt8(ascii: "\""))
    }

    /// Appends one scalar.
    public static func appendScalar(_ value: JSONScalar, to out: inout [UInt8]) {
        switch value {
        case .string(let string):
            appendString(string, to: &out)
        case .int(let int):
            out.append(contentsOf: String(int).utf8)
        case .double(let double):
            if double.isFinite {
                // Three decimals are enough for milliseconds with microsecond resolution.
                let scaled = (double * 1000).rounded() / 1000
                var text = String(scaled)
                if text.hasSuffix(".0") { text.removeLast(2) }
                out.append(contentsOf: text.utf8)
            } else {
                out.append(contentsOf: "null".utf8)
            }
        case .bool(let bool):
            out.append(contentsOf: (bool ? "true" : "false").utf8)
        case .null:
            out.append(contentsOf: "null".utf8)
        case .raw(let json):
            out.append(contentsOf: json.utf8)
        }
    }
}

/// Formats wall-clock time as RFC 3339 in UTC with milliseconds, e.g. `2026-11-25T04:45:52.123Z`.
public enum EventClock {
    /// Milliseconds since the Unix epoch, from the realtime clock.
    public static func nowMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    /// Appends the RFC 3339 form of `milliseconds` (since the epoch) to `out`.
    public static func appendRFC3339(milliseconds: Int64, to out: inout [UInt8]) {
        var seconds = time_t(milliseconds / 1000)
        let millis = Int(milliseconds % 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) {
            out.append(UInt8(ascii: "0") + UInt8(value / 10))
            out.append(UInt8(ascii: "0") + UInt8(value % 10))
        }
        let year = Int(parts.tm_year) + 1900
        out.append(contentsOf: String(year).utf8)
        out.append(UInt8(ascii: "-"))
        two(parts.tm_mon + 1)
        out.append(UInt8(ascii: "-"))
        two(parts.tm_mday)
        out.append(UInt8(ascii: "T"))
        two(parts.tm_hour)
        out.append(UInt8(ascii: ":"))
        two(parts.tm_min)
        out.append(UInt8(ascii: ":"))
        two(parts.tm_sec)
        out.append(UInt8(ascii: "."))
        out.append(UInt8(ascii: "0") + UInt8(millis / 100))
        out.append(UInt8(ascii: "0") + UInt8((millis / 10) % 10))
        out.append(UInt8(ascii: "0") + UInt8(millis % 10))
        out.append(UInt8(ascii: "Z"))
    }
}
