import XferEvents
import XferProtocol

/// The JSON text frames a plain WebSocket client (a browser, `websocat`, Python `websockets`) gets from the
/// server: the one encoder for all of them.
///
/// Statuses carry `ok`; texts carry `from`, `seq` and `text` and never `ok`, so that a script can always tell the
/// two apart. Keys are written in a fixed order.
enum PlainClientFrame {
    /// The status of message `status.id` (SPEC.md: "a JSON text frame with at least ok").
    case status(WireMessage.Status)
    /// A text routed to this client.
    case text(seq: UInt64, from: String, text: String)
    /// The error the server closes the connection with.
    case error(code: String, message: String)

    /// The frame's JSON object, as UTF-8.
    var json: [UInt8] {
        var json: [UInt8] = []
        switch self {
        case .status(let status):
            json.append(contentsOf: #"{"ok":"#.utf8)
            json.append(contentsOf: (status.ok ? "true" : "false").utf8)
            json.append(contentsOf: #","id":"#.utf8)
            json.append(contentsOf: String(status.id).utf8)
            if status.relayed {
                json.append(contentsOf: #","delivered":"#.utf8)
                json.append(contentsOf: String(status.delivered).utf8)
                json.append(contentsOf: #","held":"#.utf8)
                json.append(contentsOf: String(status.held).utf8)
            }
            if !status.code.isEmpty {
                Self.append(key: "code", status.code, to: &json)
                Self.append(key: "reason", status.reason, to: &json)
            }
        case .text(let seq, let from, let text):
            json.append(contentsOf: #"{"from":"#.utf8)
            JSONLineWriter.appendString(from, to: &json)
            json.append(contentsOf: #","seq":\#(seq)"#.utf8)
            Self.append(key: "text", text, to: &json)
        case .error(let code, let message):
            json.append(contentsOf: #"{"ok":false"#.utf8)
            Self.append(key: "code", code, to: &json)
            Self.append(key: "message", message, to: &json)
        }
        json.append(UInt8(ascii: "}"))
        return json
    }

    private static func append(key: String, _ value: String, to json: inout [UInt8]) {
        json.append(contentsOf: ",\"\(key)\":".utf8)
        JSONLineWriter.appendString(value, to: &json)
    }
}
