import NIOHTTP1
import XferEvents

/// The plain HTTP requests a server answers besides WebSocket upgrades, by method and path (the query is
/// ignored): `GET /health` today, `/metrics` or a browser page tomorrow. Who may upgrade is `UpgradePolicy`'s
/// business, not this table's.
struct HTTPRoutes: Sendable {
    /// One HTTP answer.
    struct Response: Sendable {
        /// The status line's status.
        var status: HTTPResponseStatus
        /// The `Content-Type` header.
        var contentType: String
        /// The body.
        var body: [UInt8]

        /// An answer of `contentType` holding `body`.
        init(status: HTTPResponseStatus, contentType: String, body: [UInt8]) {
            self.status = status
            self.contentType = contentType
            self.body = body
        }

        /// A JSON answer; a newline ends the body, so that `curl` output ends its line.
        init(status: HTTPResponseStatus, json: String) {
            self.status = status
            self.contentType = "application/json"
            self.body = Array((json + "\n").utf8)
        }

        /// A JSON error body: `{"ok":false,"code":...,"message":...}`.
        static func error(_ status: HTTPResponseStatus, code: String, message: String) -> Response {
            var json: [UInt8] = Array(#"{"ok":false,"code":"#.utf8)
            JSONLineWriter.appendString(code, to: &json)
            json.append(contentsOf: #","message":"#.utf8)
            JSONLineWriter.appendString(message, to: &json)
            json.append(UInt8(ascii: "}"))
            return Response(status: status, json: String(decoding: json, as: UTF8.self))
        }
    }

    /// Answers one request.
    typealias Handler = @Sendable (HTTPRequestHead) -> Response

    private var table: [String: Handler] = [:]

    /// An empty table.
    init() {}

    /// Answers `method` requests for `path` with `handler`.
    mutating func add(_ method: HTTPMethod, _ path: String, _ handler: @escaping Handler) {
        self.table[Self.key(method, path)] = handler
    }

    /// The handler for `head`'s method and path, if any.
    func match(_ head: HTTPRequestHead) -> Handler? {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        return self.table[Self.key(head.method, String(path))]
    }

    private static func key(_ method: HTTPMethod, _ path: String) -> String {
        "\(method.rawValue) \(path)"
    }
}
