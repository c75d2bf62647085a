import Testing
import XferProtocol

/// Checks how `--server` values are parsed, and the query helpers used for tokens and upload ids.
@Suite struct ServerURLTests {
    static func parseError(_ text: String) -> XferError? {
        do {
            _ = try ServerURL(parsing: text)
            return nil
        } catch {
            return error
        }
    }

    @Test func wsDefaultsToPort8000AndRootPath() throws {
        let url = try ServerURL(parsing: "ws://example.com")
        #expect(!url.tls)
        #expect(url.host == "example.com")
        #expect(url.port == 8000)
        #expect(url.path == "/")
        #expect(url.description == "ws://example.com:8000/")
    }

    @Test func wssDefaultsToPort443() throws {
        let url = try ServerURL(parsing: "wss://example.com")
        #expect(url.tls)
        #expect(url.port == 443)
        #expect(url.description == "wss://example.com:443/")
    }

    @Test func explicitPortWins() throws {
        #expect(try ServerURL(parsing: "wss://example.com:8443").port == 8443)
        #expect(try ServerURL(parsing: "ws://10.0.0.1:65535").port == 65535)
        #expect(try ServerURL(parsing: "ws://h:1").port == 1)
    }

    @Test func hostColonPortWithoutSchemeIsPlainWebSocket() throws {
        let url = try ServerURL(parsing: "box:9000")
        #expect(!url.tls)
        #expect(url.host == "box")
        #expect(url.description == "ws://box:9000/")
        #expect(try ServerURL(parsing: "box").description == "ws://box:8000/")
    }

    @Test func bracketedIPv6HostIsUnbracketedAndRebracketedInTheHostHeader() throws {
        let bare = try ServerURL(parsing: "[::1]:8000")
        #expect(bare.host == "::1")
        #expect(bare.port == 8000)
        #expect(bare.hostHeader == "[::1]:8000")
        let withScheme = try ServerURL(parsing: "ws://[fe80::1]/x")
        #expect(withScheme.host == "fe80::1")
        #expect(withScheme.port == 8000)
        #expect(withScheme.path == "/x")
        #expect(withScheme.description == "ws://[fe80::1]:8000/x")
    }

    @Test func pathAndQueryAreKept() throws {
        #expect(try ServerURL(parsing: "ws://h:1/a/b?token=x%20y&z").path == "/a/b?token=x%20y&z")
        #expect(try ServerURL(parsing: "ws://h:1?token=abc").path == "/?token=abc")
        #expect(try ServerURL(parsing: "ws://h?token=abc").port == 8000)
        #expect(try ServerURL(parsing: "h:2/path").path == "/path")
    }

    @Test(arguments: ["ws://h:0", "ws://h:65536", "ws://h:abc", "ws://h:", "ws://h:-1", "ws://h:80x", "h:99999"])
    func badPortsAreUsageErrors(_ text: String) {
        #expect(Self.parseError(text)?.code == .usage)
    }

    @Test(arguments: ["", "ws://", "wss://", "ws://:8000", "ws:///path", "[]:8000", ":8000"])
    func emptyHostsAreUsageErrors(_ text: String) {
        #expect(Self.parseError(text)?.code == .usage)
    }

    @Test(arguments: ["http://h:8000", "https://h", "ftp://h", "WS://h"])
    func otherSchemesAreUsageErrors(_ text: String) {
        let error = Self.parseError(text)
        #expect(error?.code == .usage)
        #expect(error?.message.contains("ws://") == true)
    }

    @Test func malformedIPv6BracketsAreUsageErrors() {
        #expect(Self.parseError("ws://[::1")?.code == .usage)
        #expect(Self.parseError("ws://[::1]x:80")?.code == .usage)
    }

    @Test func defaultValueParses() throws {
        let url = try ServerURL(parsing: ServerURL.defaultValue)
        #expect(url.description == "ws://127.0.0.1:8000/")
    }

    @Test func queryValueFindsTheNamedParameterAndPercentDecodesIt() {
        #expect(ServerURL.queryValue("token", in: "/?token=abc") == "abc")
        #expect(ServerURL.queryValue("token", in: "/x?a=1&token=a%20b+c&z=2") == "a b c")
        #expect(ServerURL.queryValue("token", in: "/?token=%C3%A9t%C3%A9") == "été")
        #expect(ServerURL.queryValue("token", in: "/?tokenx=1&xtoken=2&token=3") == "3")
        #expect(ServerURL.queryValue("token", in: "/?token=a=b") == "a=b")
        #expect(ServerURL.queryValue("token", in: "/?token") == "")
        #expect(ServerURL.queryValue("token", in: "/?token=") == "")
        #expect(ServerURL.queryValue("token", in: "/?token=1&token=2") == "1")
    }

    @Test func queryValueIsNilWithoutAQueryOrTheParameter() {
        #expect(ServerURL.queryValue("token", in: "/") == nil)
        #expect(ServerURL.queryValue("token", in: "/token=abc") == nil)
        #expect(ServerURL.queryValue("token", in: "/?other=1") == nil)
    }

    @Test func malformedPercentEscapesAreKeptLiterally() {
        #expect(ServerURL.queryValue("t", in: "/?t=100%") == "100%")
        #expect(ServerURL.queryValue("t", in: "/?t=%zz") == "%zz")
        #expect(ServerURL.queryValue("t", in: "/?t=%4") == "%4")
    }

    @Test func addingQueryStartsOrExtendsTheQuery() throws {
        let url = try ServerURL(parsing: "ws://h:1/up")
        let once = url.addingQuery("upload", "a b/é+&")
        #expect(once.path == "/up?upload=a%20b%2F%C3%A9%2B%26")
        let twice = once.addingQuery("token", "t")
        #expect(twice.path == "/up?upload=a%20b%2F%C3%A9%2B%26&token=t")
        #expect(url.path == "/up")
    }

    @Test(arguments: ["plain", "a b", "100%", "x&y=z", "+plus+", "日本語 🙂", "~-._", ""])
    func addingQueryRoundTripsThroughQueryValue(_ value: String) throws {
        let url = try ServerURL(parsing: "ws://h:1/?first=1").addingQuery("v", value)
        #expect(ServerURL.queryValue("v", in: url.path) == value)
        #expect(ServerURL.queryValue("first", in: url.path) == "1")
    }

    @Test func percentEncodeLeavesOnlyUnreservedCharacters() {
        #expect(ServerURL.percentEncode("AZaz09-._~") == "AZaz09-._~")
        let reserved = ServerURL.percentEncode(" /?#[]@!$&'()*+,;=%")
        #expect(reserved == "%20%2F%3F%23%5B%5D%40%21%24%26%27%28%29%2A%2B%2C%3B%3D%25")
    }
}
