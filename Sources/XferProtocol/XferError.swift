/// The one error type of xfer: a stable `code`, an actionable `message`, and the place it was made.
///
/// `code` is what the `error` event carries and what scripts match on; it never changes meaning. The mapping
/// from a code to a WebSocket close code and to a process exit status lives here, in one place.
public struct XferError: Error, Sendable, CustomStringConvertible {
    /// The stable identifier of an error's kind.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { self.rawValue }

        /// Bad command-line usage.
        public static let usage = Code(rawValue: "usage")
        /// The timezone given in the handshake is not an IANA name, `UTC`, or `+hh:mm`.
        public static let badTimezone = Code(rawValue: "bad_timezone")
        /// The server refused the token (or none was given).
        public static let unauthorized = Code(rawValue: "unauthorized")
        /// The `wss://` server's certificate could not be verified (untrusted CA, wrong host name, expired).
        public static let tlsVerificationFailed = Code(rawValue: "tls_verification_failed")
        /// The TLS handshake failed for another reason (the server does not speak TLS, no common cipher).
        public static let tlsFailed = Code(rawValue: "tls_failed")
        /// No TCP connection could be made.
        public static let serverUnreachable = Code(rawValue: "server_unreachable")
        /// The HTTP proxy could not be reached, or refused or failed the `CONNECT` tunnel to the server.
        public static let proxyFailed = Code(rawValue: "proxy_failed")
        /// The connection broke before the work was done.
        public static let connectionLost = Code(rawValue: "connection_lost")
        /// The peer did not follow the protocol.
        public static let protocolError = Code(rawValue: "protocol_error")
        /// A text frame was not valid UTF-8 (RFC 6455 section 8.1).
        public static let invalidUTF8 = Code(rawValue: "invalid_utf8")
        /// A message exceeded the configured limit.
        public static let messageTooLarge = Code(rawValue: "message_too_large")
        /// The server has no room for another connection.
        public static let serverFull = Code(rawValue: "server_full")
        /// The peer did not finish the handshake in time.
        public static let handshakeTimeout = Code(rawValue: "handshake_timeout")
        /// No frame arrived within the ping timeout.
        public static let timeout = Code(rawValue: "timeout")
        /// The server answered a message with `ok: false`.
        public static let rejected = Code(rawValue: "rejected")
        /// No listener has used the name within the hold period.
        public static let noListener = Code(rawValue: "no_listener")
        /// The server is shutting down.
        public static let shutdown = Code(rawValue: "shutdown")
        /// A local input (file or stdin) could not be read.
        public static let inputUnreadable = Code(rawValue: "input_unreadable")
        /// A command line on `serve`'s stdin could not be understood.
        public static let badCommand = Code(rawValue: "bad_command")
        /// A block failed its checksum or did not decompress to its declared size.
        public static let corruptBlock = Code(rawValue: "corrupt_block")
        /// A block kept failing its checksum: the source may be changing or the path corrupts data.
        public static let checksumFailed = Code(rawValue: "checksum_failed")
        /// The whole file's SHA-256 or size did not match at the end.
        public static let integrityFailed = Code(rawValue: "integrity_failed")
        /// The file is larger than the server's `--max-file-size`.
        public static let fileTooLarge = Code(rawValue: "file_too_large")
        /// The server's disk is full; the verified part is kept for a resume.
        public static let diskFull = Code(rawValue: "disk_full")
        /// The server cannot write into its directory.
        public static let storageFailed = Code(rawValue: "storage_failed")
        /// A file name from the client cannot be made safe (empty, only dots, ...).
        public static let badName = Code(rawValue: "bad_name")
        /// A stream upload lost more than its replay window and cannot resume.
        public static let replayWindowExceeded = Code(rawValue: "replay_window_exceeded")
        /// The upload was taken over by a newer connection for the same upload id.
        public static let superseded = Code(rawValue: "superseded")
        /// Another server process is writing this upload (one `--dir` shared by several servers): try again later.
        public static let busy = Code(rawValue: "busy")
        /// The connection did not read what the server sent it: its queued texts passed the server's outbound limit
        /// (`--max-queued-bytes`, `--max-queued-texts`), so the server closed it (1013); a named listener picks the
        /// held texts up when it reconnects.
        public static let slowConsumer = Code(rawValue: "slow_consumer")
        /// A plain WebSocket client sent a binary frame: without the `xfer.v1` subprotocol only text frames carry
        /// messages (RFC 6455 section 7.4.1, close code 1003).
        public static let unsupportedData = Code(rawValue: "unsupported_data")
        /// The client's address already holds `--max-connections-per-address` connections (HTTP 429).
        public static let tooManyConnections = Code(rawValue: "too_many_connections")
        /// `serve --cluster` cannot reach PostgreSQL (at start, or lost while running): texts cannot be committed
        /// and uploads cannot be leased. Temporary: the server reconnects by itself; clients try again.
        public static let clusterUnavailable = Code(rawValue: "cluster_unavailable")
        /// An unexpected failure inside xfer.
        public static let internalError = Code(rawValue: "internal_error")
    }

    /// The error's kind.
    public let code: Code
    /// What went wrong and what to do next.
    public let message: String
    /// The source location that made the error, for diagnostics.
    public let location: String

    /// Makes an error; `file` and `line` default to the caller's location.
    public init(_ code: Code, _ message: String, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.location = "\(file):\(line)"
    }

    public var description: String { "\(self.code): \(self.message)" }

    /// The process exit status for a client that fails with this error (sysexits.h values, see xfer(1)).
    public var exitStatus: Int32 { Self.exitStatus(for: self.code) }

    /// The exit status for `code`: 64 usage, 65 data rejected, 66 input unreadable, 69 unreachable or lost,
    /// 75 temporary, 77 not allowed, 70 internal.
    public static func exitStatus(for code: Code) -> Int32 {
        switch code {
        case .usage, .badTimezone: return 64
        case .rejected, .noListener, .invalidUTF8, .messageTooLarge, .protocolError, .corruptBlock, .checksumFailed,
            .integrityFailed, .fileTooLarge, .badName, .unsupportedData:
            return 65
        case .inputUnreadable: return 66
        case .serverUnreachable, .connectionLost, .timeout, .handshakeTimeout, .tlsFailed, .proxyFailed,
            .clusterUnavailable:
            return 69
        case .serverFull, .shutdown, .diskFull, .storageFailed, .superseded, .busy, .slowConsumer, .tooManyConnections:
            return 75
        case .replayWindowExceeded: return 69
        case .unauthorized, .tlsVerificationFailed: return 77
        default: return 70
        }
    }

    /// The WebSocket close code (RFC 6455 section 7.4.1) a server sends when a connection ends with `code`.
    public static func closeCode(for code: Code) -> UInt16 {
        switch code {
        case .badTimezone, .unauthorized: return 1008
        case .invalidUTF8: return 1007
        case .messageTooLarge: return 1009
        case .protocolError: return 1002
        case .serverFull, .busy, .slowConsumer, .clusterUnavailable: return 1013
        case .unsupportedData: return 1003
        case .shutdown: return 1001
        case .handshakeTimeout, .timeout, .superseded: return 1008
        case .corruptBlock, .checksumFailed, .integrityFailed, .fileTooLarge, .badName: return 1008
        case .diskFull, .storageFailed: return 1011
        default: return 1011
        }
    }

    /// The error a client infers from a close code sent by the server without an `error` message first.
    public static func code(forClose closeCode: UInt16) -> Code {
        switch closeCode {
        case 1001: return .shutdown
        case 1002: return .protocolError
        case 1003: return .unsupportedData
        case 1007: return .invalidUTF8
        case 1008: return .rejected
        case 1009: return .messageTooLarge
        case 1013: return .serverFull
        default: return .connectionLost
        }
    }
}
