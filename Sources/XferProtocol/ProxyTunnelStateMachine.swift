/// Opens a tunnel through an HTTP proxy (RFC 9110 section 9.3.6, `CONNECT`): sends the request once the TCP
/// connection to the proxy is up, reads the proxy's answer, and says when the tunnel is ready or why it failed.
///
/// Bytes in, actions out; the channel handler around it does the I/O and starts the timer.
public struct ProxyTunnelStateMachine: Sendable {
    /// Where the machine is.
    private enum State: Sendable {
        /// The TCP connection to the proxy is not up yet.
        case connecting
        /// `CONNECT` was sent; the answer so far (its header is not complete).
        case awaitingAnswer([UInt8])
        /// The proxy answered 2xx: bytes now belong to the tunnel.
        case established
        /// The tunnel failed and that was reported; nothing more happens.
        case failed
    }

    /// What to do when a read arrives.
    public enum ReadAction: Sendable, Equatable {
        /// The answer is not complete yet: keep reading.
        case wait
        /// The tunnel is up: start what runs inside it, then hand it `leftover` (bytes after the answer).
        case established(leftover: [UInt8])
        /// Report an error with this code and message, and close.
        case fail(XferError.Code, String)
        /// The tunnel is up (or failed): the bytes are not ours.
        case forward
    }

    /// What to do when the connection closes or the timer fires.
    public enum FailureAction: Sendable, Equatable {
        /// Report an error with this code and message, and close.
        case fail(XferError.Code, String)
        /// Nothing: the tunnel was already up, or its failure already reported.
        case none
    }

    /// The proxy.
    public let proxy: ProxyURL
    /// The server, as `host:port` (IPv6 in brackets), the tunnel goes to.
    public let target: String
    /// The longest answer header read before giving up: 16 KiB, far above any real proxy's few hundred bytes.
    public let maxAnswerBytes: Int
    private var state = State.connecting

    /// A machine for a tunnel through `proxy` to `target` (`host:port`).
    public init(proxy: ProxyURL, target: String, maxAnswerBytes: Int = 16 << 10) {
        self.proxy = proxy
        self.target = target
        self.maxAnswerBytes = maxAnswerBytes
    }

    /// The connection to the proxy is up: returns the `CONNECT` request to send.
    public mutating func channelActive() -> [UInt8] {
        guard case .connecting = self.state else {
            preconditionFailure("channelActive in state \(self.state)")
        }
        self.state = .awaitingAnswer([])
        var request = "CONNECT \(self.target) HTTP/1.1\r\nHost: \(self.target)\r\n"
        request += "User-Agent: xfer/\(XferVersion.current)\r\n"
        if let authorization = self.proxy.authorization {
            request += "Proxy-Authorization: \(authorization)\r\n"
        }
        request += "\r\n"
        return Array(request.utf8)
    }

    /// Bytes arrived from the proxy.
    public mutating func bytesReceived(_ bytes: [UInt8]) -> ReadAction {
        guard case .awaitingAnswer(var answer) = self.state else {
            // After the answer, the bytes belong to the tunnel (or to nobody, once failed).
            return .forward
        }
        answer += bytes
        guard let end = Self.headerEnd(answer) else {
            if answer.count > self.maxAnswerBytes {
                self.state = .failed
                return .fail(
                    .proxyFailed,
                    "proxy \(self.proxy) sent over \(self.maxAnswerBytes) bytes without ending its answer to CONNECT "
                        + "\(self.target): is it an HTTP proxy?"
                )
            }
            self.state = .awaitingAnswer(answer)
            return .wait
        }
        let header = String(decoding: answer[..<end.header], as: UTF8.self)
        let statusLine = String(header.prefix(while: { $0 != "\r" && $0 != "\n" }))
        let fields = statusLine.split(separator: " ", maxSplits: 2)
        guard fields.count >= 2, fields[0].hasPrefix("HTTP/1."), fields[1].count == 3, let status = Int(fields[1])
        else {
            self.state = .failed
            return .fail(
                .proxyFailed,
                "proxy \(self.proxy) did not answer CONNECT \(self.target) in HTTP (\"\(statusLine.prefix(80))\"): "
                    + "is it an HTTP proxy?"
            )
        }
        guard (200..<300).contains(status) else {
            self.state = .failed
            var message = "proxy \(self.proxy) refused CONNECT \(self.target): \(statusLine)"
            switch status {
            case 407 where self.proxy.user == nil:
                message += "; give the credentials in the proxy URL, http://USER:PASSWORD@HOST:PORT"
            case 407:
                message += "; check the user and password in the proxy URL"
            case 403:
                message += "; the proxy may only allow some ports (often 443): ask its operator, or set NO_PROXY"
            default:
                break
            }
            return .fail(.proxyFailed, message)
        }
        self.state = .established
        return .established(leftover: Array(answer[end.body...]))
    }

    /// The connection closed.
    public mutating func channelInactive() -> FailureAction {
        guard case .awaitingAnswer = self.state else { return .none }
        self.state = .failed
        return .fail(
            .proxyFailed,
            "proxy \(self.proxy) closed the connection before answering CONNECT \(self.target)"
        )
    }

    /// The connection to the proxy failed (reset, or an error a handler raised) before the tunnel was up;
    /// `description` says how.
    public mutating func errorCaught(_ description: String) -> FailureAction {
        guard case .awaitingAnswer = self.state else { return .none }
        self.state = .failed
        return .fail(
            .proxyFailed,
            "connection to proxy \(self.proxy) failed before it answered CONNECT \(self.target): \(description)"
        )
    }

    /// The proxy took longer than the connect timeout (`seconds`) to answer.
    public mutating func timedOut(after seconds: Double) -> FailureAction {
        guard case .awaitingAnswer = self.state else { return .none }
        self.state = .failed
        return .fail(
            .proxyFailed,
            "proxy \(self.proxy) did not answer CONNECT \(self.target) within \(seconds) s"
        )
    }

    /// Where the header ends (`header`, before the empty line) and the body starts, or nil if not yet.
    private static func headerEnd(_ bytes: [UInt8]) -> (header: Int, body: Int)? {
        let cr = UInt8(ascii: "\r")
        let lf = UInt8(ascii: "\n")
        var index = 0
        while index < bytes.count {
            if bytes[index] == lf {
                // LF LF, or LF CR LF (the CR of the first line break was before this LF).
                if index + 1 < bytes.count, bytes[index + 1] == lf {
                    return (index > 0 && bytes[index - 1] == cr ? index - 1 : index, index + 2)
                }
                if index + 2 < bytes.count, bytes[index + 1] == cr, bytes[index + 2] == lf {
                    return (index > 0 && bytes[index - 1] == cr ? index - 1 : index, index + 3)
                }
            }
            index += 1
        }
        return nil
    }
}
