/// Which HTTP proxy, if any, a client goes through to reach a server: curl's rules, decided without I/O.
public enum ProxyChoice: Sendable, Equatable {
    /// Connect to the server itself.
    case direct
    /// Connect to this proxy and ask it for a tunnel (`CONNECT`) to the server.
    case through(ProxyURL)

    /// The environment variables read, in order of preference, for a `wss://` server (lowercase first, as curl).
    public static let secureVariables = ["https_proxy", "HTTPS_PROXY"]
    /// The environment variables read, in order of preference, for a `ws://` server.
    public static let plainVariables = ["http_proxy", "HTTP_PROXY"]
    /// The environment variables that list the hosts reached directly.
    public static let bypassVariables = ["no_proxy", "NO_PROXY"]

    /// The proxy for `server`: `option` (`--proxy`; empty means none) if given, else `https_proxy`/`HTTPS_PROXY`
    /// for `wss://` and `http_proxy`/`HTTP_PROXY` for `ws://`; then `no_proxy`/`NO_PROXY` (see `NoProxyRules`)
    /// can send the connection direct, whichever way the proxy was given. A proxy URL that cannot be read is
    /// `usage`, naming its source.
    public static func resolve(
        option: String?,
        environment: [String: String],
        server: ServerURL
    ) throws(XferError)
        -> ProxyChoice
    {
        let proxy: ProxyURL
        if let option {
            guard !option.isEmpty else { return .direct }
            proxy = try ProxyURL(parsing: option, source: "--proxy")
        } else {
            let names = server.tls ? Self.secureVariables : Self.plainVariables
            guard let name = names.first(where: { !(environment[$0] ?? "").isEmpty }), let value = environment[name]
            else { return .direct }
            proxy = try ProxyURL(parsing: value, source: name)
        }
        let bypass = Self.bypassVariables.lazy.compactMap { environment[$0] }.first
        if NoProxyRules(bypass).matches(host: server.host, port: server.port) { return .direct }
        return .through(proxy)
    }
}
