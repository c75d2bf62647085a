import Foundation
import Testing
import XferEvents

/// Checks that every event is one valid JSON line with `event` and `time` first and exact string escaping.
@Suite struct EventTests {
    /// One event of every factory, with every optional field set, and the keys each must carry after `time`.
    static let allEvents: [(Event, [String])] = [
        (
            .listening(host: "0.0.0.0", port: 8000, dir: "/srv/inbox", pid: 42, tls: true),
            ["host", "port", "dir", "pid", "tls"]
        ),
        (
            .clientConnected(
                client: 3,
                peer: "[::1]:5000",
                timezone: "Europe/Paris",
                name: "ops",
                role: "listen",
                subprotocol: "xfer.v1"
            ),
            ["client", "peer", "timezone", "name", "role", "protocol"]
        ),
        (.connectedToServer(server: "ws://127.0.0.1:8000/", client: 9), ["server", "client"]),
        (.textReceived(client: 1, id: 2, text: "hi", name: "me", to: "ops"), ["client", "id", "text", "name", "to"]),
        (.textDelivered(from: "client-1", seq: 4, text: "hi"), ["from", "seq", "text"]),
        (
            .sendStatus(id: 1, ok: false, delivered: 0, held: 1, code: "no_listener", reason: "r", latencyMs: 1.5),
            ["id", "ok", "delivered", "held", "code", "reason", "latency_ms"]
        ),
        (.ping(rttMs: 0.25, client: 2), ["rtt_ms", "client"]),
        (
            .disconnected(reason: "closed", code: 1000, client: 2, message: "bye"),
            ["reason", "code", "client", "message"]
        ),
        (.reconnecting(attempt: 2, delayMs: 750), ["attempt", "delay_ms"]),
        (
            .sent(command: "send", to: "ops", delivered: 0, held: 0, ref: "r1", failure: ("no_listener", "why")),
            ["cmd", "ok", "to", "delivered", "held", "ref", "code", "reason"]
        ),
        (.error(code: "bad_command", message: "m", client: 1, ref: "r2"), ["code", "message", "client", "ref"]),
        (.clients(count: 1, listJSON: #"[{"id":1}]"#, ref: "r3"), ["count", "clients", "ref"]),
        (
            .progress(name: "a.bin", bytes: 10, total: 100, client: 4, upload: "u1", wireBytes: 7),
            ["name", "bytes", "total", "client", "upload", "wire_bytes"]
        ),
        (
            .relayed(client: 2, id: 3, to: "ops", delivered: 0, held: 0, code: "no_listener"),
            ["client", "id", "to", "ok", "delivered", "held", "code"]
        ),
        (
            .fileSaved(
                client: 4,
                name: "a.bin",
                path: "/srv/a.bin",
                bytes: 100,
                sha256: String(repeating: "ab", count: 32),
                upload: "u1",
                resumedFrom: 50
            ),
            ["client", "name", "path", "bytes", "sha256", "upload", "resumed_from"]
        ),
        (
            .uploadStatus(
                ok: false,
                file: "/tmp/a.bin",
                name: "a.bin",
                bytes: 100,
                sha256: "00",
                path: "a.bin",
                resumedFrom: 0,
                upload: "u1",
                code: "disk_full",
                reason: "r"
            ),
            ["ok", "file", "name", "bytes", "sha256", "path", "resumed_from", "upload", "code", "reason"]
        ),
        (
            .retry(name: "a.bin", offset: 4096, reason: "crc", count: 1, client: 4, upload: "u1"),
            ["name", "offset", "reason", "count", "client", "upload"]
        ),
        (.missed(name: "ops", since: 41, count: 3), ["name", "since", "count"]),
        (.cluster(state: "down", instance: "xfer-1", message: "lost"), ["state", "instance", "message"]),
    ]

    @Test func theInstanceTagGoesOnlyOnEventsThatSayWhere() {
        final class Recorder: EventSink, @unchecked Sendable {
            var events: [Event] = []
            func emit(_ events: [Event]) { self.events += events }
        }
        let recorder = Recorder()
        let sink = InstanceTaggingSink(instance: "xfer-2", next: recorder)
        sink.emit([
            .listening(host: "127.0.0.1", port: 80, dir: "/d", pid: 1),
            .ping(rttMs: 1, client: 1),
            .clientConnected(client: 1, peer: "p", timezone: "UTC", name: nil, role: "plain", subprotocol: nil),
        ])
        #expect(recorder.events.map { $0["instance"] } == [.string("xfer-2"), nil, .string("xfer-2")])
        #expect(recorder.events[0].adding("instance", .string("b"))["instance"] == .string("b"))
    }

    static let kinds: [EventKind] = allEvents.map(\.0.kind)

    @Test func everyEventKindHasAFactoryUnderTest() {
        #expect(Set(Self.kinds) == Set(EventKind.allCases))
    }

    @Test(arguments: 0..<allEvents.count)
    func everyEventIsOneJSONObjectWithEventAndTimeFirst(_ index: Int) throws {
        let (event, keys) = Self.allEvents[index]
        let line = event.jsonLine
        #expect(!line.contains("\n"))
        #expect(line.hasPrefix(#"{"event":"\#(event.kind.rawValue)","time":""#))
        let object = try parseObject(line)
        #expect(object["event"] as? String == event.kind.rawValue)
        #expect(Set(object.keys) == Set(["event", "time"] + keys))
        #expect(event.fields.map(\.key) == keys)
    }

    @Test(arguments: 0..<allEvents.count)
    func timeIsRFC3339UTCWithMilliseconds(_ index: Int) throws {
        let object = try parseObject(Self.allEvents[index].0.jsonLine)
        let time = try #require(object["time"] as? String)
        #expect(time.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/) != nil, "\(time)")
    }

    @Test func timeIsNowInUTC() throws {
        let before = Date()
        let object = try parseObject(Event.reconnecting(attempt: 1, delayMs: 1).jsonLine)
        let time = try #require(object["time"] as? String)
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let parsed = try #require(formatter.date(from: time))
        #expect(abs(parsed.timeIntervalSince(before)) < 5)
    }

    @Test func rfc3339FormattingIsPinned() {
        #expect(rfc3339(0) == "1970-01-01T00:00:00.000Z")
        #expect(rfc3339(1_700_000_000_123) == "2023-11-14T22:13:20.123Z")
        #expect(rfc3339(951_782_400_007) == "2000-02-29T00:00:00.007Z")
        #expect(rfc3339(253_402_300_799_999) == "9999-12-31T23:59:59.999Z")
    }

    @Test func appendJSONLineEndsWithOneNewline() {
        var bytes: [UInt8] = []
        Event.ping(rttMs: 1, client: nil).appendJSONLine(to: &bytes)
        Event.ping(rttMs: 2, client: nil).appendJSONLine(to: &bytes)
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 3)
        #expect(lines.last == "")
    }

    // MARK: Strings

    static let hardStrings: [String] = [
        #"say "hi""#,
        #"C:\path\to\file"#,
        "\\\"",
        "line1\nline2\r\nline3\ttab",
        String((0..<32).map { Character(Unicode.Scalar(UInt8($0))) }),
        "nul\u{0}inside",
        "\u{7F}del",
        "line\u{2028}separator\u{2029}paragraph",
        "emoji 👩‍💻🇫🇷🙂 and é (precomposed) and e\u{301} (combining)",
        "日本語のテキスト",
        "</script><!-- -->",
        "",
    ]

    @Test(arguments: hardStrings)
    func stringsRoundTripExactlyThroughJSONSerialization(_ text: String) throws {
        let line = Event.textDelivered(from: text, seq: 1, text: text).jsonLine
        #expect(!line.contains("\n"))
        #expect(!line.contains("\r"))
        let object = try parseObject(line)
        let parsed = try #require(object["text"] as? String)
        #expect(Array(parsed.unicodeScalars) == Array(text.unicodeScalars))
        #expect(Array((object["from"] as? String ?? "").utf8) == Array(text.utf8))
    }

    @Test func escapesArePinned() {
        #expect(encoded(#"a"b\c"#) == #""a\"b\\c""#)
        #expect(encoded("\n\r\t") == #""\n\r\t""#)
        #expect(encoded("\u{0}\u{1}\u{1F}\u{7F}") == #""\u0000\u0001\u001f\u007f""#)
        #expect(encoded("é\u{2028}🙂") == "\"é\u{2028}🙂\"")
        #expect(encoded("/") == #""/""#)
    }

    // MARK: Numbers

    @Test(
        arguments: [
            (0.0, "0"), (0.25, "0.25"), (1.5, "1.5"), (3.0, "3"), (12.345, "12.345"), (0.001, "0.001"),
            (0.0004, "0"), (0.0006, "0.001"), (1234.5678, "1234.568"), (59_999.999, "59999.999"),
            (0.1 + 0.2, "0.3"), (3_600_000.0, "3600000"),
        ]
    )
    func rttPrintsAsAPlainDecimalWithAtMostThreeDecimals(_ value: Double, _ expected: String) throws {
        let line = Event.ping(rttMs: value, client: nil).jsonLine
        #expect(line.hasSuffix(#","rtt_ms":\#(expected)}"#), "\(line)")
        let object = try parseObject(line)
        #expect(object["rtt_ms"] is NSNumber)
    }

    @Test func nonFiniteDoublesBecomeNull() throws {
        for value in [Double.nan, .infinity, -.infinity] {
            let object = try parseObject(Event.ping(rttMs: value, client: nil).jsonLine)
            #expect(object["rtt_ms"] is NSNull)
        }
    }

    @Test func integersAndBooleansAreJSONNumbersAndBooleans() throws {
        let line = Event.sendStatus(id: 7, ok: true, delivered: 2, held: 0, code: nil, reason: nil, latencyMs: nil)
            .jsonLine
        #expect(line.hasSuffix(#","id":7,"ok":true,"delivered":2,"held":0}"#))
        let big = Event.textReceived(client: 1, id: UInt64(Int64.max), text: "", name: nil, to: nil).jsonLine
        #expect(big.contains(#""id":9223372036854775807"#))
    }

    // MARK: Optional fields

    @Test func nilOptionalFieldsAreOmitted() throws {
        let cases: [(Event, Set<String>)] = [
            (.disconnected(reason: "closed", code: nil, client: nil), ["reason"]),
            (.connectedToServer(server: "ws://h:1/", client: nil), ["server"]),
            (.textReceived(client: 1, id: 1, text: "t", name: nil, to: nil), ["client", "id", "text"]),
            (.ping(rttMs: 1, client: nil), ["rtt_ms"]),
            (
                .sent(command: "broadcast", to: nil, delivered: 0, held: 0, ref: nil),
                ["cmd", "ok", "delivered", "held"]
            ),
            (
                .uploadStatus(
                    ok: true,
                    file: "f",
                    name: "n",
                    bytes: 1,
                    sha256: nil,
                    path: nil,
                    resumedFrom: 0,
                    upload: "u"
                ),
                ["ok", "file", "name", "bytes", "resumed_from", "upload"]
            ),
            (
                .retry(name: "n", offset: 0, reason: "r", count: 1, client: nil, upload: "u"),
                ["name", "offset", "reason", "count", "upload"]
            ),
            (.error(code: "c", message: "m"), ["code", "message"]),
            (.clients(count: 0, listJSON: "[]", ref: nil), ["count", "clients"]),
            (
                .sendStatus(id: 1, ok: true, delivered: nil, held: nil, code: nil, reason: nil, latencyMs: nil),
                ["id", "ok"]
            ),
            (
                .clientConnected(client: 1, peer: "p", timezone: "UTC", name: nil, role: "plain", subprotocol: nil),
                ["client", "peer", "timezone", "role", "protocol"]
            ),
        ]
        for (event, keys) in cases {
            let object = try parseObject(event.jsonLine)
            #expect(Set(object.keys) == keys.union(["event", "time"]), "\(event.jsonLine)")
            #expect(!event.jsonLine.contains("null"))
        }
    }

    @Test func streamProgressHasANullTotalRatherThanNone() throws {
        let line = Event.progress(name: "cam1.ts", bytes: 1 << 33, total: nil, client: nil, upload: "u").jsonLine
        #expect(line.contains(#""total":null"#))
        let object = try parseObject(line)
        #expect(object["total"] is NSNull)
        #expect(object["bytes"] as? Int == 1 << 33)
        #expect(object["client"] == nil)
    }

    @Test func sentReportsOkUnlessItFailed() throws {
        let ok = try parseObject(Event.sent(command: "send", to: "ops", delivered: 1, held: 0, ref: nil).jsonLine)
        #expect(ok["ok"] as? Bool == true)
        #expect(ok["code"] == nil)
        let failed = Event.sent(
            command: "send",
            to: "x",
            delivered: 0,
            held: 0,
            ref: nil,
            failure: ("no_listener", "r")
        )
        let object = try parseObject(failed.jsonLine)
        #expect(object["ok"] as? Bool == false)
        #expect(object["code"] as? String == "no_listener")
    }

    @Test func plainClientsReportProtocolPlain() {
        let event = Event.clientConnected(
            client: 1,
            peer: "p",
            timezone: "UTC",
            name: nil,
            role: "plain",
            subprotocol: nil
        )
        #expect(event["protocol"] == .string("plain"))
        #expect(event["name"] == nil)
    }

    @Test func rawJSONIsEmbeddedAsIs() throws {
        let list = #"[{"id":1,"name":"ops"},{"id":2}]"#
        let object = try parseObject(Event.clients(count: 2, listJSON: list, ref: nil).jsonLine)
        let clients = try #require(object["clients"] as? [[String: Any]])
        #expect(clients.count == 2)
        #expect(clients.first?["name"] as? String == "ops")
    }
}

/// Parses one JSON line into a dictionary, failing the test when it is not a JSON object.
func parseObject(_ line: String) throws -> [String: Any] {
    let value = try JSONSerialization.jsonObject(with: Data(line.utf8), options: [.fragmentsAllowed])
    return try #require(value as? [String: Any], "not a JSON object: \(line)")
}

/// `string` as `JSONLineWriter` quotes it.
func encoded(_ string: String) -> String {
    var bytes: [UInt8] = []
    JSONLineWriter.appendString(string, to: &bytes)
    return String(decoding: bytes, as: UTF8.self)
}

/// `milliseconds` since the epoch as `EventClock` formats it.
func rfc3339(_ milliseconds: Int64) -> String {
    var bytes: [UInt8] = []
    EventClock.appendRFC3339(milliseconds: milliseconds, to: &bytes)
    return String(decoding: bytes, as: UTF8.self)
}
