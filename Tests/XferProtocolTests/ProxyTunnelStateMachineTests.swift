import Testing
import XferProtocol

/// The `CONNECT` exchange: the request, answers split anywhere, refusals and broken proxies.
@Suite struct ProxyTunnelStateMachineTests {
    static func machine(_ proxy: String = "http://proxy:3128") throws -> ProxyTunnelStateMachine {
        ProxyTunnelStateMachine(proxy: try ProxyURL(parsing: proxy, source: "--proxy"), target: "files.example.com:443")
    }

    @Test func requestNamesTheTargetAndCarriesCredentials() throws {
        var plain = try Self.machine()
        let request = String(decoding: plain.channelActive(), as: UTF8.self)
        #expect(request.hasPrefix("CONNECT files.example.com:443 HTTP/1.1\r\nHost: files.example.com:443\r\n"))
        #expect(request.hasSuffix("\r\n\r\n"))
        #expect(!request.contains("Proxy-Authorization"))
        var authenticated = try Self.machine("http://u:p@proxy:3128")
        let withCredentials = String(decoding: authenticated.channelActive(), as: UTF8.self)
        #expect(withCredentials.contains("\r\nProxy-Authorization: Basic dTpw\r\n"))
    }

    @Test func answerSplitAtEveryByteEstablishesTheTunnelAndKeepsWhatFollows() throws {
        let answer = Array("HTTP/1.1 200 Connection established\r\nVia: test\r\n\r\nTLS".utf8)
        let headerLength = answer.count - 3
        for split in 1..<answer.count {
            var machine = try Self.machine()
            _ = machine.channelActive()
            let first = machine.bytesReceived(Array(answer[..<split]))
            let second = machine.bytesReceived(Array(answer[split...]))
            if split < headerLength {
                #expect(first == .wait, "split at \(split)")
                #expect(second == .established(leftover: Array("TLS".utf8)), "split at \(split)")
            } else {
                #expect(first == .established(leftover: Array(answer[headerLength..<split])), "split at \(split)")
                #expect(second == .forward, "split at \(split)")
            }
            #expect(machine.channelInactive() == .none)
        }
    }

    @Test func bareLineFeedsAreAccepted() throws {
        var machine = try Self.machine()
        _ = machine.channelActive()
        #expect(machine.bytesReceived(Array("HTTP/1.0 200 OK\n\n".utf8)) == .established(leftover: []))
    }

    @Test func refusalNamesTheProxyAndItsStatusLine() throws {
        var machine = try Self.machine()
        _ = machine.channelActive()
        let action = machine.bytesReceived(Array("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".utf8))
        guard case .fail(let code, let message) = action else {
            Issue.record("expected a failure, got \(action)")
            return
        }
        #expect(code == .proxyFailed)
        #expect(message.contains("http://proxy:3128"))
        #expect(message.contains("HTTP/1.1 403 Forbidden"))
        #expect(machine.channelInactive() == .none)
    }

    @Test func authenticationRequiredSaysWhereCredentialsGo() throws {
        var machine = try Self.machine()
        _ = machine.channelActive()
        let action = machine.bytesReceived(Array("HTTP/1.1 407 Proxy Authentication Required\r\n\r\n".utf8))
        guard case .fail(_, let message) = action else {
            Issue.record("expected a failure, got \(action)")
            return
        }
        #expect(message.contains("407"))
        #expect(message.contains("http://USER:PASSWORD@HOST:PORT"))
    }

    @Test func notHTTPHangUpTimeoutAndEndlessHeadersFail() throws {
        var garbage = try Self.machine()
        _ = garbage.channelActive()
        guard case .fail(.proxyFailed, _) = garbage.bytesReceived(Array("SSH-2.0-OpenSSH\r\n\r\n".utf8)) else {
            Issue.record("a non-HTTP answer was accepted")
            return
        }
        var hangUp = try Self.machine()
        _ = hangUp.channelActive()
        #expect(hangUp.bytesReceived(Array("HTTP/1.1 200".utf8)) == .wait)
        guard case .fail(.proxyFailed, let closed) = hangUp.channelInactive() else {
            Issue.record("a hang-up was not a failure")
            return
        }
        #expect(closed.contains("closed the connection"))
        #expect(hangUp.timedOut(after: 10) == .none)
        var slow = try Self.machine()
        _ = slow.channelActive()
        guard case .fail(.proxyFailed, let late) = slow.timedOut(after: 10) else {
            Issue.record("a timeout was not a failure")
            return
        }
        #expect(late.contains("within 10.0 s"))
        var reset = try Self.machine()
        _ = reset.channelActive()
        guard case .fail(.proxyFailed, let failed) = reset.errorCaught("connection reset by peer") else {
            Issue.record("an error before the answer was not a failure")
            return
        }
        #expect(failed.contains("http://proxy:3128") && failed.contains("connection reset by peer"))
        #expect(reset.channelInactive() == .none)
        var established = try Self.machine()
        _ = established.channelActive()
        _ = established.bytesReceived(Array("HTTP/1.1 200 OK\r\n\r\n".utf8))
        #expect(established.errorCaught("late") == .none)
        var endless = ProxyTunnelStateMachine(
            proxy: try ProxyURL(parsing: "proxy", source: "--proxy"),
            target: "h:1",
            maxAnswerBytes: 64
        )
        _ = endless.channelActive()
        #expect(endless.bytesReceived(Array(repeating: UInt8(ascii: "a"), count: 60)) == .wait)
        guard case .fail(.proxyFailed, _) = endless.bytesReceived(Array(repeating: UInt8(ascii: "a"), count: 10)) else {
            Issue.record("an endless answer was accepted")
            return
        }
    }
}
