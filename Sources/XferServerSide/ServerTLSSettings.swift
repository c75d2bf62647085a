import NIOCore
import NIOSSL
import XferProtocol

/// The server's certificate and key (`--tls-cert`, `--tls-key`), loaded once at start.
public struct ServerTLSSettings: Sendable {
    /// PEM file with the certificate chain, leaf first.
    public var certificateFile: String
    /// PEM file with the private key.
    public var keyFile: String

    /// Settings for `certificateFile` and `keyFile`.
    public init(certificateFile: String, keyFile: String) {
        self.certificateFile = certificateFile
        self.keyFile = keyFile
    }

    /// Loads both files into a server context; an unreadable or mismatched pair is `input_unreadable`.
    func makeContext() throws(XferError) -> NIOSSLContext {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(self.certificateFile)
        } catch {
            throw XferError(
                .inputUnreadable,
                "cannot read --tls-cert \(self.certificateFile): \(error); give a PEM certificate chain"
            )
        }
        guard !chain.isEmpty else {
            throw XferError(.inputUnreadable, "--tls-cert \(self.certificateFile) holds no PEM certificate")
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: self.keyFile, format: .pem)
        } catch {
            throw XferError(.inputUnreadable, "cannot read --tls-key \(self.keyFile): \(error); give a PEM private key")
        }
        let tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) },
            privateKey: .privateKey(key)
        )
        do {
            return try NIOSSLContext(configuration: tls)
        } catch {
            throw XferError(
                .inputUnreadable,
                "--tls-cert \(self.certificateFile) and --tls-key \(self.keyFile) do not make a usable pair: \(error)"
            )
        }
    }
}
