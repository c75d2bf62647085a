import Testing
import XferProtocol

/// Which proxy a client uses for which server, proxy URLs, and `NO_PROXY` with curl's rules.
@Suite struct ProxyChoiceTests {
    static let plain = try! ServerURL(parsing: "ws://files.example.com:8000")
    static let secure = try! ServerURL(parsing: "wss://files.example.com")

    static func choice(_ option: String?, _ environment: [String: String], _ server: ServerURL) throws -> ProxyChoice {
        try ProxyChoice.resolve(option: option, environment: environment, server: server)
    }

    static func proxy(_ text: String) throws -> ProxyURL { try ProxyURL(parsing: text, source: "--proxy") }

    @Test func proxyURLDefaultsToHTTPAndPort1080() throws {
        let bare = try Self.proxy("proxy.corp")
        #expect(bare.host == "proxy.corp")
        #expect(bare.port == 1080)
        #expect(bare.user == nil)
        #expect(bare.authorization == nil)
        let full = try Self.proxy("http://proxy.corp:3128/")
        #expect(full.port == 3128)
        #expect(full.description == "http://proxy.corp:3128")
        let v6 = try Self.proxy("http://[::1]:3128")
        #expect(v6.host == "::1")
        #expect(v6.authority == "[::1]:3128")
    }

    @Test func credentialsArePercentDecodedAndSentAsBasicButNeverShown() throws {
        let proxy = try Self.proxy("http://al%40ice:p%3Ass+w@proxy:3128")
        #expect(proxy.user == "al@ice")
        #expect(proxy.password == "p:ss+w")
        // base64("al@ice:p:ss+w")
        #expect(proxy.authorization == "Basic YWxAaWNlOnA6c3Mrdw==")
        #expect(!proxy.description.contains("p:ss"))
        #expect(try Self.proxy("http://bob@proxy").authorization == "Basic Ym9iOg==")
    }

    @Test func proxyURLsThatCannotWorkAreUsageErrorsNamingTheirSource() throws {
        for text in ["https://proxy:3128", "socks5://proxy:1080", "http://:3128", "http://proxy:0", "http://proxy/x"] {
            #expect(throws: XferError.self, "\(text)") { try Self.proxy(text) }
        }
        do {
            _ = try ProxyURL(parsing: "https://user:secret@proxy", source: "HTTPS_PROXY")
            Issue.record("an https:// proxy was accepted")
        } catch {
            #expect(error.code == .usage)
            #expect(error.message.contains("HTTPS_PROXY"))
            #expect(!error.message.contains("secret"))
        }
    }

    @Test func optionWinsOverTheEnvironmentAndEmptyMeansNone() throws {
        let environment = ["https_proxy": "http://env:1", "http_proxy": "http://env:2"]
        #expect(try Self.choice("http://cli:3", environment, Self.secure) == .through(try Self.proxy("http://cli:3")))
        #expect(try Self.choice("", environment, Self.secure) == .direct)
    }

    @Test func wssUsesHTTPSProxyAndWsUsesHTTPProxyLowercaseFirst() throws {
        let environment = [
            "https_proxy": "http://lower-s:1", "HTTPS_PROXY": "http://upper-s:1",
            "HTTP_PROXY": "http://upper:2",
        ]
        #expect(try Self.choice(nil, environment, Self.secure) == .through(try Self.proxy("http://lower-s:1")))
        #expect(try Self.choice(nil, environment, Self.plain) == .through(try Self.proxy("http://upper:2")))
        #expect(try Self.choice(nil, ["HTTPS_PROXY": "http://s:1"], Self.plain) == .direct)
        #expect(try Self.choice(nil, ["http_proxy": ""], Self.plain) == .direct)
        #expect(try Self.choice(nil, [:], Self.secure) == .direct)
    }

    @Test func noProxyAppliesToTheOptionAndTheEnvironment() throws {
        let bypass = ["NO_PROXY": "example.com", "HTTPS_PROXY": "http://env:1"]
        #expect(try Self.choice("http://cli:3", bypass, Self.secure) == .direct)
        #expect(try Self.choice(nil, bypass, Self.secure) == .direct)
        // no_proxy is read before NO_PROXY, as curl does.
        let both = ["no_proxy": "other.org", "NO_PROXY": "example.com", "HTTPS_PROXY": "http://env:1"]
        #expect(try Self.choice(nil, both, Self.secure) == .through(try Self.proxy("http://env:1")))
    }

    @Test func noProxyMatchesADomainAndItsSubdomainsOnly() {
        for entry in ["example.com", ".example.com", "EXAMPLE.com.", " foo.org , example.com"] {
            let rules = NoProxyRules(entry)
            #expect(rules.matches(host: "example.com", port: 80), "\(entry)")
            #expect(rules.matches(host: "www.Example.com", port: 443), "\(entry)")
            #expect(!rules.matches(host: "notexample.com", port: 80), "\(entry)")
            #expect(!rules.matches(host: "example.com.evil.org", port: 80), "\(entry)")
        }
        #expect(NoProxyRules("*").matches(host: "anything.at.all", port: 1))
        #expect(!NoProxyRules("*.example.com").matches(host: "example.org", port: 1))
        #expect(!NoProxyRules("").matches(host: "example.com", port: 80))
        #expect(!NoProxyRules(nil).matches(host: "example.com", port: 80))
        #expect(NoProxyRules("a.org b.org\texample.com").matches(host: "example.com", port: 80))
    }

    @Test func noProxyEntriesWithAPortMatchOnlyThatPort() {
        let rules = NoProxyRules("example.com:8000,[::1]:9000,10.1.2.3:7")
        #expect(rules.matches(host: "www.example.com", port: 8000))
        #expect(!rules.matches(host: "www.example.com", port: 8001))
        #expect(rules.matches(host: "::1", port: 9000))
        #expect(!rules.matches(host: "::1", port: 9001))
        #expect(rules.matches(host: "10.1.2.3", port: 7))
        #expect(!rules.matches(host: "10.1.2.3", port: 8))
    }

    @Test func noProxyMatchesIPLiteralsAndCIDRRangesButNotNames() {
        let rules = NoProxyRules("127.0.0.1,10.0.0.0/8,fd00::/8,::1,[2001:db8::7]")
        #expect(rules.matches(host: "127.0.0.1", port: 1))
        #expect(!rules.matches(host: "127.0.0.2", port: 1))
        #expect(rules.matches(host: "10.200.3.4", port: 1))
        #expect(!rules.matches(host: "11.0.0.1", port: 1))
        #expect(rules.matches(host: "fd12:3456::1", port: 1))
        #expect(!rules.matches(host: "fe80::1", port: 1))
        #expect(rules.matches(host: "0:0:0:0:0:0:0:1", port: 1))
        #expect(rules.matches(host: "[::1]", port: 1))
        #expect(rules.matches(host: "2001:db8:0::7", port: 1))
        #expect(!rules.matches(host: "localhost", port: 1))
        // A name entry never matches an address that only looks like a suffix of it.
        #expect(!NoProxyRules("0.0.1").matches(host: "10.0.0.1", port: 1))
        #expect(NoProxyRules("::ffff:192.0.2.0/120").matches(host: "::ffff:192.0.2.9", port: 1))
    }
}
