import NIOHTTP1
import Testing

@testable import XferClientSide
@testable import XferServerSide
@testable import XferTransport

/// Checks who may upgrade: tokens in the header or the query, compared in constant time, and subprotocols.
@Suite struct UpgradePolicyTests {
    static func head(_ uri: String = "/", _ headers: [(String, String)] = []) -> HTTPRequestHead {
        HTTPRequestHead(version: .http1_1, method: .GET, uri: uri, headers: HTTPHeaders(headers))
    }

    static let guarded = ServerConfiguration(token: "s3cret")

    @Test func withoutATokenEveryoneIsAccepted() {
        #expect(
            UpgradePolicy.decide(head: Self.head(), configuration: ServerConfiguration()) == .accept(subprotocol: nil)
        )
    }

    @Test func bearerHeaderIsAccepted() {
        let head = Self.head("/", [("Authorization", "Bearer s3cret")])
        #expect(UpgradePolicy.decide(head: head, configuration: Self.guarded) == .accept(subprotocol: nil))
        let lower = Self.head("/", [("authorization", "bearer s3cret ")])
        #expect(UpgradePolicy.decide(head: lower, configuration: Self.guarded) == .accept(subprotocol: nil))
    }

    @Test func tokenQueryParameterIsAcceptedForBrowsers() {
        let head = Self.head("/?token=s3cret")
        #expect(UpgradePolicy.decide(head: head, configuration: Self.guarded) == .accept(subprotocol: nil))
        let encoded = Self.head("/?x=1&token=s%33cret")
        #expect(
            UpgradePolicy.decide(head: encoded, configuration: ServerConfiguration(token: "s3cret"))
                == .accept(subprotocol: nil)
        )
    }

    @Test func missingOrWrongTokenIsRefusedWith401() {
        for head in [Self.head(), Self.head("/?token=nope"), Self.head("/", [("Authorization", "Bearer s3cre")])] {
            guard case .refuse(let status, let message) = UpgradePolicy.decide(head: head, configuration: Self.guarded)
            else {
                Issue.record("\(head.uri) \(head.headers) was accepted")
                continue
            }
            #expect(status == .unauthorized)
            #expect(message.contains("token"))
        }
    }

    @Test func xferSubprotocolIsNegotiatedWhenOffered() {
        let head = Self.head("/", [("Sec-WebSocket-Protocol", "chat, xfer.v1")])
        #expect(UpgradePolicy.offersXfer(head))
        #expect(
            UpgradePolicy.decide(head: head, configuration: ServerConfiguration()) == .accept(subprotocol: "xfer.v1")
        )
        #expect(!UpgradePolicy.offersXfer(Self.head("/", [("Sec-WebSocket-Protocol", "xfer.v2")])))
    }

    @Test func constantTimeEqualsComparesWholeStrings() {
        #expect(constantTimeEquals("abc", "abc"))
        #expect(constantTimeEquals("", ""))
        #expect(!constantTimeEquals("abc", "abd"))
        #expect(!constantTimeEquals("abc", "abcd"))
        #expect(!constantTimeEquals("abc", ""))
        // Lengths that differ by a multiple of 256 must not compare equal.
        #expect(!constantTimeEquals("", String(repeating: "\u{0}", count: 256)))
    }
}
