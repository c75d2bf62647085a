/// A server address as users type it: `ws://host:port/path`, `wss://host`, or plain `host:port`.
public struct ServerURL: Sendable, Equatable, CustomStringConvertible {
    /// Whether the connection uses TLS (`wss`).
    public var tls: Bool
    /// Host name or IP address (IPv6 without brackets).
    public var host: String
    /// TCP port; 8000 when not given for `ws`, 443 for `wss`.
    public var port: Int
    /// Request path and query, starting with `/`.
    public var path: String

    /// The default server, also used when neither `--server` nor `XFER_SERVER` is set.
    public static let defaultValue = "ws://127.0.0.1:8000"

    /// Parses `text`; throws `usage` with an example of what is accepted.
    public init(parsing text: String) throws(XferError) {
        var rest = Substring(text)
        if rest.hasPrefix("ws://") {
            self.tls = false
            rest = rest.dropFirst(5)
        } else if rest.hasPrefix("wss://") {
            self.tls = true
            rest = rest.dropFirst(6)
        } else if rest.contains("://") {
            throw XferError(.usage, "server URL \"\(text)\" must start with ws:// or wss:// (or be host:port)")
        } else {
            self.tls = false
        }
        let authority: Substring
        if let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) {
            authority = rest[..<slash]
            let tail = rest[slash...]
            self.path = tail.hasPrefix("?") ? "/" + tail : String(tail)
        } else {
            authority = rest
            self.path = "/"
        }
        var host: Substring
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else {
                throw XferError(.usage, "server URL \"\(text)\" has an unclosed IPv6 bracket: write ws://[::1]:8000")
            }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") {
                portText = after.dropFirst()
            } else if !after.isEmpty {
                throw XferError(.usage, "server URL \"\(text)\" has text after the IPv6 address: write ws://[::1]:8000")
            }
        } else if authority.filter({ $0 == ":" }).count > 1 {
            throw XferError(
                .usage,
                "server URL \"\(text)\" looks like an IPv6 address: put it in brackets, ws://[::1]:8000"
            )
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        guard !host.isEmpty else {
            throw XferError(
                .usage,
                "server URL \"\(text)\" has no host: write ws://HOST:PORT, e.g. ws://127.0.0.1:8000"
            )
        }
        if let portText {
            guard let port = Int(portText), (1...65535).contains(port) else {
                throw XferError(.usage, "server URL \"\(text)\" has an invalid port: use a number from 1 to 65535")
            }
            self.port = port
        } else {
            self.port = self.tls ? 443 : 8000
        }
        self.host = String(host)
    }

    /// The `Host` header value (RFC 7230 section 5.4).
    public var hostHeader: String {
        let shownHost = self.host.contains(":") ? "[\(self.host)]" : self.host
        return "\(shownHost):\(self.port)"
    }

    public var description: String {
        "\(self.tls ? "wss" : "ws")://\(self.hostHeader)\(self.path)"
    }

    /// This URL with `name=value` added to the query (values percent-encoded).
    public func addingQuery(_ name: String, _ value: String) -> ServerURL {
        var copy = self
        let encoded = Self.percentEncode(value)
        copy.path += (self.path.contains("?") ? "&" : "?") + "\(name)=\(encoded)"
        return copy
    }

    /// Percent-encodes everything but RFC 3986 unreserved characters.
    public static func percentEncode(_ value: String) -> String {
        var out = ""
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".unicodeScalars)
                out.unicodeScalars.append("%")
                out.unicodeScalars.append(hex[Int(byte >> 4)])
                out.unicodeScalars.append(hex[Int(byte & 0xF)])
            }
        }
        return out
    }

    /// The value of query parameter `name` in a request target such as `/?token=abc`, percent-decoded.
    public static func queryValue(_ name: String, in target: String) -> String? {
        guard let question = target.firstIndex(of: "?") else { return nil }
        for pair in target[target.index(after: question)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            if parts.first == Substring(name) {
                return percentDecode(parts.count > 1 ? parts[1] : "")
            }
        }
        return nil
    }

    static func percentDecode(_ text: Substring) -> String {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8)[...]
        while let byte = iterator.popFirst() {
            if byte == UInt8(ascii: "%"), iterator.count >= 2,
                let value = UInt8(String(decoding: iterator.prefix(2), as: UTF8.self), radix: 16)
            {
                bytes.append(value)
                iterator = iterator.dropFirst(2)
            } else if byte == UInt8(ascii: "+") {
                bytes.append(UInt8(ascii: " "))
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
