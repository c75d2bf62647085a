/// What a connection is for: the role an `xfer` client announces in `hello`, or `plain` for any other WebSocket
/// client.
///
/// The raw value is the wire value of `hello.role` and the `role` field of the server's `connected` event.
public enum ClientKind: String, Sendable, Equatable, CaseIterable {
    /// `xfer send`: sends texts and waits for their statuses.
    case send
    /// `xfer listen`: receives the texts routed to it.
    case listen
    /// `xfer upload`: sends one upload per connection.
    case upload
    /// A browser, `websocat` or Python `websockets`: sends texts, gets JSON statuses and texts back.
    case plain

    /// Whether texts may be routed to this connection (a sender or an uploader would take one as a protocol error).
    public var receivesTexts: Bool {
        switch self {
        case .listen, .plain: return true
        case .send, .upload: return false
        }
    }
}

/// The `hello` an `xfer` client opens its session with, as typed fields.
///
/// On the wire it is a map of string fields (see xfer-protocol(7)); this type is the one place that knows their
/// names and rules, for the client that builds it and the server that checks it.
public struct Hello: Sendable, Equatable {
    /// The client's timezone, validated by the server (`ClientTimezone`).
    public var timezone: String
    /// The connection's role; `plain` is never sent in a hello.
    public var role: ClientKind
    /// The listener name (`xfer listen --name`), if any.
    public var name: String?
    /// Where this connection's texts go (`xfer send --to`), if anywhere but the server's stdout.
    public var relayTo: String?
    /// Whether this connection's texts go to every listener (`xfer send --all`).
    public var relayToAll: Bool
    /// The client's software and version, e.g. `xfer/0.1.0`.
    public var client: String?
    /// Where a reconnecting listener left off (wire fields `since` and `epoch`), if it wants to resume.
    public var resume: ResumePoint?

    /// A hello with these fields.
    public init(
        timezone: String,
        role: ClientKind,
        name: String? = nil,
        relayTo: String? = nil,
        relayToAll: Bool = false,
        client: String? = nil,
        resume: ResumePoint? = nil
    ) {
        self.timezone = timezone
        self.role = role
        self.name = name
        self.relayTo = relayTo
        self.relayToAll = relayToAll
        self.client = client
        self.resume = resume
    }

    /// Reads and checks the wire fields: a missing role means `send` (the first protocol version had none); the
    /// timezone is checked with `isKnownZone`.
    public init(fields: [String: String], isKnownZone: (String) -> Bool) throws(XferError) {
        let zone = try ClientTimezone.validate(fields["timezone"] ?? "", isKnownZone: isKnownZone)
        let roleText = fields["role"] ?? ClientKind.send.rawValue
        guard let role = ClientKind(rawValue: roleText), role != .plain else {
            throw XferError(.protocolError, "unknown role \"\(roleText.prefix(32))\" in hello")
        }
        let name = fields["name"].flatMap { $0.isEmpty ? nil : $0 }
        if let name, !Self.isValidName(name) {
            throw XferError(
                .protocolError,
                "listener name \"\(name.prefix(32))\" is not valid: use 1-128 letters, digits, '.', '_', '-', '@'"
            )
        }
        var resume: ResumePoint?
        if let sinceText = fields["since"] {
            guard let since = Self.parseSequence(sinceText) else {
                throw XferError(.protocolError, "since \"\(sinceText.prefix(32))\" in hello is not a sequence number")
            }
            resume = ResumePoint(since: since, epoch: fields["epoch"].flatMap { $0.isEmpty ? nil : $0 })
        }
        self.init(
            timezone: zone,
            role: role,
            name: name,
            relayTo: fields["to"].flatMap { $0.isEmpty ? nil : $0 },
            relayToAll: fields["all"] == "1",
            client: fields["client"],
            resume: resume
        )
    }

    /// A sequence number as the wire writes it: 1-20 ASCII digits that fit in 64 bits, nothing else.
    public static func parseSequence(_ text: String) -> UInt64? {
        let utf8 = text.utf8
        guard (1...20).contains(utf8.count), utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
        else { return nil }
        return UInt64(text)
    }

    /// The wire fields of this hello.
    public var fields: [String: String] {
        var fields = ["timezone": self.timezone, "role": self.role.rawValue]
        if let client = self.client { fields["client"] = client }
        if let name = self.name { fields["name"] = name }
        if let to = self.relayTo { fields["to"] = to }
        if self.relayToAll { fields["all"] = "1" }
        if let resume = self.resume {
            fields["since"] = String(resume.since)
            if let epoch = resume.epoch { fields["epoch"] = epoch }
        }
        return fields
    }

    /// Whether `name` may be a listener name: 1-128 ASCII letters, digits, `.`, `_`, `-`, `@`.
    public static func isValidName(_ name: String) -> Bool {
        let utf8 = name.utf8
        guard (1...128).contains(utf8.count) else { return false }
        return utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"),
                UInt8(ascii: "@"):
                return true
            default:
                return false
            }
        }
    }
}
