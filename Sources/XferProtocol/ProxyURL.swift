/// An HTTP proxy as users write it in `--proxy` or `HTTPS_PROXY`: `http://[user:password@]host[:port][/]`.
///
/// Only `http://` proxies are supported (the tunnel's TLS, for `wss://`, runs end to end inside `CONNECT`); a URL
/// without a scheme is read as `http://`, and a missing port is 1080, as curl does.
public struct ProxyURL: Sendable, Equatable, CustomStringConvertible {
    /// Host name or IP address of the proxy (IPv6 without brackets).
    public var host: String
    /// TCP port of the proxy.
    public var port: Int
    /// User name from the URL (percent-decoded), or nil.
    public var user: String?
    /// Password from the URL (percent-decoded), or nil.
    public var password: String?

    /// The port a proxy URL without one gets (curl's default).
    public static let defaultPort = 1080

    /// Parses `text`; `source` names where it came from (`--proxy`, `HTTPS_PROXY`) in the `usage` error.
    public init(parsing text: String, source: String) throws(XferError) {
        var rest = Substring(text)
        if let scheme = rest.firstRange(of: "://") {
            let name = rest[..<scheme.lowerBound].lowercased()
            guard name == "http" else {
                throw XferError(
                    .usage,
                    "\(source) \"\(Self.redacted(text))\" is a \(name):// proxy; only http:// proxies (CONNECT) are "
                        + "supported, e.g. http://proxy.example:3128"
                )
            }
            rest = rest[scheme.upperBound...]
        }
        if let slash = rest.firstIndex(of: "/") {
            guard rest[slash...].allSatisfy({ $0 == "/" }) else {
                throw XferError(
                    .usage,
                    "\(source) \"\(Self.redacted(text))\" has a path; write http://[user:password@]host:port"
                )
            }
            rest = rest[..<slash]
        }
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                self.user = Self.percentDecode(credentials[..<colon])
                self.password = Self.percentDecode(credentials[credentials.index(after: colon)...])
            } else {
                self.user = Self.percentDecode(credentials)
                self.password = nil
            }
        } else {
            self.user = nil
            self.password = nil
        }
        var host: Substring
        var portText: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else {
                throw XferError(.usage, "\(source) \"\(Self.redacted(text))\" has an unclosed IPv6 bracket")
            }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if after.hasPrefix(":") {
                portText = after.dropFirst()
            } else if !after.isEmpty {
                throw XferError(.usage, "\(source) \"\(Self.redacted(text))\" has text after the IPv6 address")
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        } else {
            host = rest
        }
        guard !host.isEmpty else {
            throw XferError(
                .usage,
                "\(source) \"\(Self.redacted(text))\" has no host: write http://HOST:PORT, e.g. http://proxy:3128"
            )
        }
        if let portText {
            guard let port = Int(portText), (1...65535).contains(port) else {
                throw XferError(
                    .usage,
                    "\(source) \"\(Self.redacted(text))\" has an invalid port: use a number from 1 to 65535"
                )
            }
            self.port = port
        } else {
            self.port = Self.defaultPort
        }
        self.host = String(host)
    }

    /// `host:port` with IPv6 in brackets, as it appears in messages and in `CONNECT`.
    public var authority: String {
        let shownHost = self.host.contains(":") ? "[\(self.host)]" : self.host
        return "\(shownHost):\(self.port)"
    }

    /// The value of `Proxy-Authorization` (RFC 7617 Basic), or nil when the URL holds no user.
    public var authorization: String? {
        guard let user = self.user else { return nil }
        return "Basic " + Base64.encode(Array("\(user):\(self.password ?? "")".utf8))
    }

    /// `http://host:port`, never the credentials: this is what messages show.
    public var description: String { "http://\(self.authority)" }

    /// `%XX` escapes decoded; unlike a query, `+` stays a plus (RFC 3986 section 3.2.1 userinfo).
    static func percentDecode(_ text: Substring) -> String {
        var bytes: [UInt8] = []
        var rest = Array(text.utf8)[...]
        while let byte = rest.popFirst() {
            if byte == UInt8(ascii: "%"), rest.count >= 2,
                let value = UInt8(String(decoding: rest.prefix(2), as: UTF8.self), radix: 16)
            {
                bytes.append(value)
                rest = rest.dropFirst(2)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `text` with any password replaced by `***`, for messages about a URL that did not parse.
    static func redacted(_ text: String) -> String {
        guard let at = text.lastIndex(of: "@") else { return text }
        let start = text.firstRange(of: "://")?.upperBound ?? text.startIndex
        guard start < at, let colon = text[start..<at].firstIndex(of: ":") else { return text }
        return String(text[...colon]) + "***" + String(text[at...])
    }
}

/// Base64 (RFC 4648 section 4, with padding), for `Proxy-Authorization`.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index < bytes.count {
            let count = min(3, bytes.count - index)
            var group: UInt32 = 0
            for offset in 0..<3 {
                group <<= 8
                if offset < count { group |= UInt32(bytes[index + offset]) }
            }
            for slot in 0..<4 {
                if slot <= count {
                    out.append(Self.alphabet[Int((group >> (18 - 6 * UInt32(slot))) & 0x3F)])
                } else {
                    out.append(UInt8(ascii: "="))
                }
            }
            index += 3
        }
        return String(decoding: out, as: UTF8.self)
    }
}
