/// `NO_PROXY`: the hosts a client reaches directly, with curl's rules.
///
/// The list is split at commas and white space. `*` alone matches every host. A name matches that host and every
/// host under it (`example.com` and `.example.com` both match `example.com` and `www.example.com`, never
/// `notexample.com`); case does not matter and a trailing dot is ignored. An IP literal matches that address
/// (`::1`, `[::1]`), and `ADDRESS/BITS` a CIDR range (`10.0.0.0/8`, `fd00::/8`); names are never resolved to match
/// an address. An entry may end in `:PORT` (`[::1]:PORT` for IPv6), and then it matches only that port.
public struct NoProxyRules: Sendable, Equatable {
    /// One entry of the list.
    enum Entry: Sendable, Equatable {
        /// `*`: every host.
        case everything
        /// A host name and its subdomains (lowercased, without leading or trailing dots), on `port` or any.
        case domain(String, port: Int?)
        /// An address range: `bits` leading bits of `address` (4 bytes for IPv4, 16 for IPv6), on `port` or any.
        case network([UInt8], bits: Int, port: Int?)
    }

    /// The entries, in the order written; an entry that cannot be read is left out, as curl does.
    let entries: [Entry]

    /// Rules from a `NO_PROXY` value; nil or empty gives rules that match nothing.
    public init(_ text: String?) {
        var entries: [Entry] = []
        for token in (text ?? "").split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\t" }) {
            if let entry = Self.entry(token) { entries.append(entry) }
        }
        self.entries = entries
    }

    /// Whether a connection to `host` on `port` bypasses the proxy.
    public func matches(host: String, port: Int) -> Bool {
        var name = host.lowercased()
        if name.hasPrefix("[") && name.hasSuffix("]") { name = String(name.dropFirst().dropLast()) }
        while name.hasSuffix(".") { name.removeLast() }
        let address = IPAddressText.parse(name)
        for entry in self.entries {
            switch entry {
            case .everything:
                return true
            case .domain(let domain, let entryPort):
                // An address is matched by address entries only: "0.0.1" is not a domain of "10.0.0.1".
                guard address == nil, entryPort == nil || entryPort == port else { continue }
                if name == domain || (name.hasSuffix(domain) && name.dropLast(domain.count).hasSuffix(".")) {
                    return true
                }
            case .network(let network, let bits, let entryPort):
                guard entryPort == nil || entryPort == port, let address, address.count == network.count else {
                    continue
                }
                if Self.prefix(of: address, equals: network, bits: bits) { return true }
            }
        }
        return false
    }

    private static func entry(_ token: Substring) -> Entry? {
        if token == "*" { return .everything }
        var text = token.lowercased()[...]
        var port: Int?
        if text.hasPrefix("[") {
            // [v6] or [v6]:port
            guard let close = text.firstIndex(of: "]") else { return nil }
            let after = text[text.index(after: close)...]
            if after.hasPrefix(":") {
                guard let value = Int(after.dropFirst()), (1...65535).contains(value) else { return nil }
                port = value
            } else if !after.isEmpty {
                return nil
            }
            text = text[text.index(after: text.startIndex)..<close]
        } else if text.filter({ $0 == ":" }).count == 1, let colon = text.firstIndex(of: ":") {
            // name:port or v4:port (more than one colon is a bare IPv6 address)
            guard let value = Int(text[text.index(after: colon)...]), (1...65535).contains(value) else { return nil }
            port = value
            text = text[..<colon]
        }
        if let slash = text.firstIndex(of: "/") {
            guard let address = IPAddressText.parse(String(text[..<slash])),
                let bits = Int(text[text.index(after: slash)...]), (0...address.count * 8).contains(bits)
            else { return nil }
            return .network(address, bits: bits, port: port)
        }
        if let address = IPAddressText.parse(String(text)) {
            return .network(address, bits: address.count * 8, port: port)
        }
        while text.hasPrefix(".") { text = text.dropFirst() }
        while text.hasSuffix(".") { text = text.dropLast() }
        guard !text.isEmpty else { return nil }
        return .domain(String(text), port: port)
    }

    private static func prefix(of address: [UInt8], equals network: [UInt8], bits: Int) -> Bool {
        var remaining = bits
        for index in 0..<address.count where remaining > 0 {
            let take = min(8, remaining)
            let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - take))
            if address[index] & mask != network[index] & mask { return false }
            remaining -= take
        }
        return true
    }
}

/// Reads IPv4 (`a.b.c.d`) and IPv6 (RFC 4291 section 2.2 text, `::` and a trailing IPv4 part included) literals.
enum IPAddressText {
    /// The address's bytes (4 or 16), or nil when `text` is not an IP literal.
    static func parse(_ text: String) -> [UInt8]? {
        if let v4 = Self.parseV4(Substring(text)) { return v4 }
        return Self.parseV6(Substring(text))
    }

    private static func parseV4(_ text: Substring) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy(\.isASCII), let value = UInt8(part) else {
                return nil
            }
            bytes.append(value)
        }
        return bytes
    }

    private static func parseV6(_ text: Substring) -> [UInt8]? {
        guard text.contains(":") else { return nil }
        let halves = Self.splitAtDoubleColons(text)
        guard halves.count <= 2 else { return nil }
        func groups(_ part: Substring) -> [UInt8]? {
            if part.isEmpty { return [] }
            var bytes: [UInt8] = []
            let fields = part.split(separator: ":", omittingEmptySubsequences: false)
            for (index, field) in fields.enumerated() {
                if index == fields.count - 1, field.contains("."), let v4 = Self.parseV4(field) {
                    bytes += v4
                    continue
                }
                guard (1...4).contains(field.count), let value = UInt16(field, radix: 16) else { return nil }
                bytes += [UInt8(value >> 8), UInt8(value & 0xFF)]
            }
            return bytes
        }
        guard let head = groups(halves[0]) else { return nil }
        if halves.count == 1 {
            return head.count == 16 ? head : nil
        }
        guard let tail = groups(halves[1]), head.count + tail.count <= 14 else { return nil }
        return head + [UInt8](repeating: 0, count: 16 - head.count - tail.count) + tail
    }

    /// The parts before and after each `::`.
    private static func splitAtDoubleColons(_ text: Substring) -> [Substring] {
        var parts: [Substring] = []
        var start = text.startIndex
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(after: index)
            if text[index] == ":", next < text.endIndex, text[next] == ":" {
                parts.append(text[start..<index])
                start = text.index(after: next)
                index = start
            } else {
                index = next
            }
        }
        parts.append(text[start...])
        return parts
    }
}
