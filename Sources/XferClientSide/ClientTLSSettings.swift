import NIOCore
import NIOSSL
import XferProtocol

/// How a client verifies a `wss://` server: the system's roots by default, a CA file, or (explicitly) not at all.
public struct ClientTLSSettings: Sendable, Equatable {
    /// PEM file of certificates to trust instead of the system's roots (a private CA or a self-signed server).
    public var caFile: String?
    /// Skips certificate and host name verification (`--insecure`); the traffic is still encrypted.
    public var insecure: Bool

    /// Verification against the system's trust roots.
    public init(caFile: String? = nil, insecure: Bool = false) {
        self.caFile = caFile
        self.insecure = insecure
    }

    /// The NIOSSL context for these settings; a CA file that cannot be read is `input_unreadable`.
    func makeContext() throws(XferError) -> NIOSSLContext {
        var tls = TLSConfiguration.makeClientConfiguration()
        if self.insecure {
            tls.certificateVerification = .none
        } else if let caFile = self.caFile {
            do {
                let certificates = try NIOSSLCertificate.fromPEMFile(caFile)
                guard !certificates.isEmpty else {
                    throw XferError(.inputUnreadable, "--tls-ca \(caFile) holds no PEM certificate")
                }
                tls.trustRoots = .certificates(certificates)
            } catch let error as XferError {
                throw error
            } catch {
                throw XferError(
                    .inputUnreadable,
                    "cannot read --tls-ca \(caFile): \(error); give a PEM file of CA certificates"
                )
            }
        }
        do {
            return try NIOSSLContext(configuration: tls)
        } catch {
            throw XferError(.tlsFailed, "cannot set up TLS: \(error)")
        }
    }

    /// The handler that starts TLS for `server`; IP literals get no SNI and are checked against IP SANs.
    func makeHandler(context: NIOSSLContext, server: ServerURL) throws -> NIOSSLClientHandler {
        let host = server.host
        let isIPLiteral = (try? SocketAddress(ipAddress: host, port: 0)) != nil
        return try NIOSSLClientHandler(context: context, serverHostname: isIPLiteral ? nil : host)
    }

    /// Turns a TLS failure during the handshake into an error that tells the user what to do.
    static func describe(_ error: Error, server: ServerURL) -> XferError? {
        let text = "\(error)"
        if let extra = error as? NIOSSLExtraError, extra == .failedToValidateHostname {
            return XferError(
                .tlsVerificationFailed,
                "the certificate of \(server) is not valid for \"\(server.host)\" (\(text)): connect by a name "
                    + "the certificate lists, or pass --insecure to skip verification"
            )
        }
        guard error is NIOSSLError || error is NIOSSLExtraError || error is BoringSSLError else { return nil }
        if text.contains("CERTIFICATE_VERIFY_FAILED") || text.contains("certificate verify failed") {
            return XferError(
                .tlsVerificationFailed,
                "cannot verify the TLS certificate of \(server) (\(text)): pass --tls-ca FILE to trust its CA "
                    + "or self-signed certificate, or --insecure to skip verification"
            )
        }
        return XferError(
            .tlsFailed,
            "TLS handshake with \(server) failed (\(text)): is it an `xfer serve --tls-cert ...`? use ws:// for a "
                + "server without TLS"
        )
    }
}
