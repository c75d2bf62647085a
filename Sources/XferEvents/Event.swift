/// The type of an event: the value of its `event` key.
///
/// The set is closed; `schema/events.schema.json` describes every member and the tests validate each event
/// they see against it.
public enum EventKind: String, Sendable, CaseIterable {
    /// `serve` is bound and accepting: `host`, `port`, `dir`.
    case listening
    /// A connection is established (after the timezone handshake on the server).
    case connected
    /// A text message arrived.
    case text
    /// The server's answer to a message sent by `xfer send`.
    case status
    /// A connection ended.
    case disconnected
    /// A pong came back: `rtt_ms`.
    case ping
    /// A client waits before connecting again.
    case reconnecting
    /// The result of a command read on `serve`'s stdin.
    case sent
    /// The routing result of a text a client asked the server to relay (`xfer send --to/--all`).
    case relayed
    /// The answer to a `clients` command on `serve`'s stdin.
    case clients
    /// Upload progress: `name`, `bytes`, `total` (null for a stream).
    case progress
    /// The server verified and saved an upload.
    case fileSaved = "file_saved"
    /// A block failed verification and is sent again.
    case retry
    /// Something failed: `code` (stable) and `message` (actionable).
    case error
    /// A resuming listener's texts after `since` that are no longer held: `count`.
    case missed
    /// `serve --cluster`: the instance's link to PostgreSQL is `up` or `down`.
    case cluster
}

/// One event: a flat JSON object with `event` and `time` first, then its fields in a fixed order.
public struct Event: Sendable {
    /// The event's type.
    public let kind: EventKind
    /// Wall-clock time in milliseconds since the Unix epoch.
    public let time: Int64
    /// The fields after `event` and `time`, in output order.
    public private(set) var fields: [(key: String, value: JSONScalar)]

    init(_ kind: EventKind, time: Int64? = nil, _ fields: [(String, JSONScalar?)]) {
        self.kind = kind
        self.time = time ?? EventClock.nowMilliseconds()
        self.fields = fields.compactMap { key, value in value.map { (key, $0) } }
    }

    /// This event with field `key` set to `value` (appended, or replaced where it is already present).
    public func adding(_ key: String, _ value: JSONScalar) -> Event {
        var copy = self
        if let index = copy.fields.firstIndex(where: { $0.key == key }) {
            copy.fields[index].value = value
        } else {
            copy.fields.append((key, value))
        }
        return copy
    }

    /// The value of field `key`, if present.
    public subscript(key: String) -> JSONScalar? {
        self.fields.first(where: { $0.key == key })?.value
    }

    /// Appends this event as one JSON line (with the trailing newline) to `out`.
    public func appendJSONLine(to out: inout [UInt8]) {
        out.append(contentsOf: #"{"event":""#.utf8)
        out.append(contentsOf: self.kind.rawValue.utf8)
        out.append(contentsOf: #"","time":""#.utf8)
        EventClock.appendRFC3339(milliseconds: self.time, to: &out)
        out.append(UInt8(ascii: "\""))
        for (key, value) in self.fields {
            out.append(UInt8(ascii: ","))
            out.append(UInt8(ascii: "\""))
            out.append(contentsOf: key.utf8)
            out.append(contentsOf: #"":"#.utf8)
            JSONLineWriter.appendScalar(value, to: &out)
        }
        out.append(contentsOf: "}\n".utf8)
    }

    /// This event as one JSON line, without the trailing newline.
    public var jsonLine: String {
        var bytes: [UInt8] = []
        self.appendJSONLine(to: &bytes)
        bytes.removeLast()
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension Event {
    /// `serve` is listening on `host`:`port` and saves into `dir`; `tls` says whether clients need `wss://`.
    public static func listening(host: String, port: Int, dir: String, pid: Int, tls: Bool = false) -> Event {
        Event(
            .listening,
            [
                ("host", .string(host)), ("port", .int(Int64(port))), ("dir", .string(dir)), ("pid", .int(Int64(pid))),
                ("tls", .bool(tls)),
            ]
        )
    }

    /// A client completed the handshake (server side).
    public static func clientConnected(
        client: Int,
        peer: String,
        timezone: String,
        name: String?,
        role: String,
        subprotocol: String?
    ) -> Event {
        Event(
            .connected,
            [
                ("client", .int(Int64(client))), ("peer", .string(peer)), ("timezone", .string(timezone)),
                ("name", name.map(JSONScalar.string)), ("role", .string(role)),
                ("protocol", .string(subprotocol ?? "plain")),
            ]
        )
    }

    /// `serve --cluster`: the link of `instance` to PostgreSQL is `state` (`up` or `down`), with why it went down.
    public static func cluster(state: String, instance: String, message: String? = nil) -> Event {
        Event(
            .cluster,
            [("state", .string(state)), ("instance", .string(instance)), ("message", message.map(JSONScalar.string))]
        )
    }

    /// A resuming listener (named `name`) missed `count` texts after `since`: they are no longer held.
    public static func missed(name: String?, since: UInt64, count: UInt64) -> Event {
        Event(
            .missed,
            [
                ("name", name.map(JSONScalar.string)), ("since", .int(Int64(clamping: since))),
                ("count", .int(Int64(clamping: count))),
            ]
        )
    }

    /// The client is connected to `server` and the server accepted its handshake.
    public static func connectedToServer(server: String, client: Int?) -> Event {
        Event(.connected, [("server", .string(server)), ("client", client.map { .int(Int64($0)) })])
    }

    /// A text message arrived at the server from `client`; `id` is its number on that connection.
    public static func textReceived(client: Int, id: UInt64, text: String, name: String?, to: String?) -> Event {
        Event(
            .text,
            [
                ("client", .int(Int64(client))), ("id", .int(Int64(id))), ("text", .string(text)),
                ("name", name.map(JSONScalar.string)), ("to", to.map(JSONScalar.string)),
            ]
        )
    }

    /// A listener received `text` from `from`; `seq` numbers the texts for one listener name.
    public static func textDelivered(from: String, seq: UInt64, text: String) -> Event {
        Event(.text, [("from", .string(from)), ("seq", .int(Int64(clamping: seq))), ("text", .string(text))])
    }

    /// The server's status for message `id` sent by `xfer send`.
    public static func sendStatus(
        id: UInt64,
        ok: Bool,
        delivered: Int?,
        held: Int?,
        code: String?,
        reason: String?,
        latencyMs: Double?
    ) -> Event {
        Event(
            .status,
            [
                ("id", .int(Int64(id))), ("ok", .bool(ok)), ("delivered", delivered.map { .int(Int64($0)) }),
                ("held", held.map { .int(Int64($0)) }), ("code", code.map(JSONScalar.string)),
                ("reason", reason.map(JSONScalar.string)), ("latency_ms", latencyMs.map(JSONScalar.double)),
            ]
        )
    }

    /// A pong answered our ping after `rttMs` milliseconds.
    public static func ping(rttMs: Double, client: Int?) -> Event {
        Event(.ping, [("rtt_ms", .double(rttMs)), ("client", client.map { .int(Int64($0)) })])
    }

    /// A connection ended for `reason`, with the WebSocket close `code` when one was exchanged.
    public static func disconnected(reason: String, code: Int?, client: Int?, message: String? = nil) -> Event {
        Event(
            .disconnected,
            [
                ("reason", .string(reason)), ("code", code.map { .int(Int64($0)) }),
                ("client", client.map { .int(Int64($0)) }), ("message", message.map(JSONScalar.string)),
            ]
        )
    }

    /// The client waits `delayMs` before connection attempt number `attempt`.
    public static func reconnecting(attempt: Int, delayMs: Int) -> Event {
        Event(.reconnecting, [("attempt", .int(Int64(attempt))), ("delay_ms", .int(Int64(delayMs)))])
    }

    /// The result of a `send` or `broadcast` command read on `serve`'s stdin.
    /// `failure` (code, reason) when the target is unknown: then `ok` is false.
    public static func sent(
        command: String,
        to: String?,
        delivered: Int,
        held: Int,
        ref: String?,
        failure: (code: String, reason: String)? = nil
    ) -> Event {
        Event(
            .sent,
            [
                ("cmd", .string(command)), ("ok", .bool(failure == nil)), ("to", to.map(JSONScalar.string)),
                ("delivered", .int(Int64(delivered))), ("held", .int(Int64(held))), ("ref", ref.map(JSONScalar.string)),
                ("code", failure.map { .string($0.code) }), ("reason", failure.map { .string($0.reason) }),
            ]
        )
    }

    /// Upload progress of `name`: `bytes` verified so far of `total` (nil for a stream). On the server,
    /// `wireBytes` counts the block payload bytes this connection has received (compressed or not).
    public static func progress(
        name: String,
        bytes: UInt64,
        total: UInt64?,
        client: Int?,
        upload: String,
        wireBytes: UInt64? = nil
    ) -> Event {
        Event(
            .progress,
            [
                ("name", .string(name)), ("bytes", .int(Int64(bytes))),
                ("total", total.map { .int(Int64($0)) } ?? .null),
                ("client", client.map { .int(Int64($0)) }), ("upload", .string(upload)),
                ("wire_bytes", wireBytes.map { .int(Int64($0)) }),
            ]
        )
    }

    /// The router answered for text `id` of `client`, relayed to `to` (a listener name, or `*` for everyone):
    /// `delivered` listeners got it and `held` copies wait for listeners that are away; `code` when it failed.
    public static func relayed(client: Int, id: UInt64, to: String, delivered: Int, held: Int, code: String?) -> Event {
        Event(
            .relayed,
            [
                ("client", .int(Int64(client))), ("id", .int(Int64(id))), ("to", .string(to)),
                ("ok", .bool(code == nil)), ("delivered", .int(Int64(delivered))), ("held", .int(Int64(held))),
                ("code", code.map(JSONScalar.string)),
            ]
        )
    }

    /// The server saved an upload at `path` (absolute).
    public static func fileSaved(
        client: Int,
        name: String,
        path: String,
        bytes: UInt64,
        sha256: String,
        upload: String,
        resumedFrom: UInt64
    ) -> Event {
        Event(
            .fileSaved,
            [
                ("client", .int(Int64(client))), ("name", .string(name)), ("path", .string(path)),
                ("bytes", .int(Int64(bytes))), ("sha256", .string(sha256)), ("upload", .string(upload)),
                ("resumed_from", .int(Int64(resumedFrom))),
            ]
        )
    }

    /// The outcome of one upload, on the client.
    public static func uploadStatus(
        ok: Bool,
        file: String,
        name: String,
        bytes: UInt64,
        sha256: String?,
        path: String?,
        resumedFrom: UInt64,
        upload: String,
        code: String? = nil,
        reason: String? = nil
    ) -> Event {
        Event(
            .status,
            [
                ("ok", .bool(ok)), ("file", .string(file)), ("name", .string(name)), ("bytes", .int(Int64(bytes))),
                ("sha256", sha256.map(JSONScalar.string)), ("path", path.map(JSONScalar.string)),
                ("resumed_from", .int(Int64(resumedFrom))), ("upload", .string(upload)),
                ("code", code.map(JSONScalar.string)), ("reason", reason.map(JSONScalar.string)),
            ]
        )
    }

    /// A block of upload `name` at `offset` failed verification (`reason`) and is sent again; `count` is the
    /// number of retries of this upload so far.
    public static func retry(
        name: String,
        offset: UInt64,
        reason: String,
        count: Int,
        client: Int?,
        upload: String
    )
        -> Event
    {
        Event(
            .retry,
            [
                ("name", .string(name)), ("offset", .int(Int64(offset))), ("reason", .string(reason)),
                ("count", .int(Int64(count))), ("client", client.map { .int(Int64($0)) }), ("upload", .string(upload)),
            ]
        )
    }

    /// Something failed. `code` is stable snake_case; `message` says what to do.
    public static func error(code: String, message: String, client: Int? = nil, ref: String? = nil) -> Event {
        Event(
            .error,
            [
                ("code", .string(code)), ("message", .string(message)), ("client", client.map { .int(Int64($0)) }),
                ("ref", ref.map(JSONScalar.string)),
            ]
        )
    }

    /// The answer to `{"cmd":"clients"}`: `count` and `clients`, an array of objects.
    public static func clients(count: Int, listJSON: String, ref: String?) -> Event {
        Event(
            .clients,
            [("count", .int(Int64(count))), ("clients", .raw(listJSON)), ("ref", ref.map(JSONScalar.string))]
        )
    }
}
