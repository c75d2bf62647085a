import Foundation
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing
import XferEvents

@testable import XferClientSide
@testable import XferProtocol
@testable import XferServerSide
@testable import XferTransport

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The events a server emitted, recorded in memory and read back as the JSON objects stdout would carry.
final class EventFile {
    let sink = RecordingEventSink()

    /// Every event emitted so far, as parsed JSON lines.
    func events() throws -> [[String: Any]] {
        try self.sink.events.map { event in
            let line = event.jsonLine
            let value = try JSONSerialization.jsonObject(with: Data(line.utf8))
            return try #require(value as? [String: Any], "not a JSON object: \(line)")
        }
    }

    /// The events of one type, in order.
    func events(_ kind: String) throws -> [[String: Any]] {
        try self.events().filter { $0["event"] as? String == kind }
    }
}

/// One `ServerConnectionHandler` on an `EmbeddedChannel`, as the server installs it after the upgrade.
///
/// The peer's side is played by writing `WebSocketFrame`s inbound, encoded to the bytes a client sends and decoded
/// by the server's `ClientFrameDecoder`; what the server sends is read back as `WebSocketFrame`s outbound (there is
/// no frame encoder in the pipeline).
final class ConnectionHarness {
    /// Timezones the fake zone database knows.
    static let knownZones: Set<String> = ["Europe/Paris", "America/New_York"]

    /// A directory path for the upload store that no test writes to.
    static let unusedDirectory = FileManager.default.temporaryDirectory
        .appendingPathComponent("xfer-unit-no-uploads-\(UUID().uuidString)").path

    let channel: EmbeddedChannel
    let registry: Connections
    let events: EventFile
    let clientID: Int

    init(
        mode: ServerConnectionStateMachine.Mode,
        configuration: ServerConfiguration = ConnectionHarness.configuration(),
        registry: Connections = Connections(),
        router: (any MessageRouter)? = nil,
        events: EventFile? = nil,
        clientID: Int = 1,
        handshakeDeadline: NIODeadline = .uptimeNanoseconds(0) + .seconds(10)
    ) throws {
        self.events = events ?? EventFile()
        self.registry = registry
        self.clientID = clientID
        let server = ServerContext(
            configuration: configuration,
            registry: registry.registry,
            router: router ?? registry.router,
            sink: self.events.sink,
            // No test here uploads: the store's directory is never created.
            store: LocalUploadStore(directory: Self.unusedDirectory, maxFileSize: 1 << 20),
            isKnownZone: { Self.knownZones.contains($0) }
        )
        // The server reserves a slot before the upgrade; registering turns it into a client.
        #expect(registry.reserveSlot(limit: .max))
        let handler = ServerConnectionHandler(
            mode: mode,
            server: server,
            clientID: clientID,
            peer: "127.0.0.1:40000",
            handshakeDeadline: handshakeDeadline
        )
        self.channel = EmbeddedChannel()
        try self.channel.pipeline.syncOperations.addHandler(
            ClientFrameDecoder(maxFrameSize: configuration.maxFrameSize, pool: server.blockBuffers)
        )
        try self.channel.pipeline.syncOperations.addHandler(handler)
        try self.channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 8000)).wait()
    }

    /// A configuration whose timers stay out of the way unless a test advances the clock on purpose.
    static func configuration(
        pingInterval: Double = 3600,
        pingTimeout: Double = 7200,
        maxTextBytes: Int = 64
    ) -> ServerConfiguration {
        ServerConfiguration(pingInterval: pingInterval, pingTimeout: pingTimeout, maxTextBytes: maxTextBytes)
    }

    /// The peer sends one frame (one read, then read-complete).
    func send(_ frame: WebSocketFrame) throws {
        try self.channel.writeInbound(frame.wireBytes)
    }

    /// The peer's frames arrive in one read burst: several reads, then one read-complete.
    func sendBurst(_ frames: [WebSocketFrame]) throws {
        for frame in frames {
            self.channel.pipeline.syncOperations.fireChannelRead(NIOAny(frame.wireBytes))
        }
        self.channel.pipeline.syncOperations.fireChannelReadComplete()
        try self.channel.throwIfErrorCaught()
    }

    /// Every frame the server has flushed so far.
    func sentFrames() throws -> [WebSocketFrame] {
        var frames: [WebSocketFrame] = []
        while let frame = try self.channel.readOutbound(as: WebSocketFrame.self) {
            frames.append(frame)
        }
        return frames
    }

    /// Sends the handshake for `mode` and drops what the server answered (the welcome, for xfer).
    func handshake(_ fields: [String: String] = ["timezone": "UTC"]) throws {
        try self.send(.binary(.hello(fields)))
        _ = try self.sentFrames()
    }

    /// Closes the channel, as the end of a test.
    func finish() {
        _ = try? self.channel.finish(acceptAlreadyClosed: true)
    }
}

extension WebSocketFrame {
    /// The frame as it travels: header (RFC 6455 section 5.2), masking key if any, and the payload as it stands.
    var wireBytes: ByteBuffer {
        var first = self.fin ? 0x80 : 0 as UInt8
        if self.rsv1 { first |= 0x40 }
        if self.rsv2 { first |= 0x20 }
        if self.rsv3 { first |= 0x10 }
        first |= UInt8(webSocketOpcode: self.opcode)
        let length = self.data.readableBytes
        let maskBit: UInt8 = self.maskKey == nil ? 0 : 0x80
        var buffer = ByteBuffer()
        buffer.writeInteger(first)
        if length < 126 {
            buffer.writeInteger(maskBit | UInt8(length))
        } else if length <= 0xFFFF {
            buffer.writeInteger(maskBit | 126)
            buffer.writeInteger(UInt16(length))
        } else {
            buffer.writeInteger(maskBit | 127)
            buffer.writeInteger(UInt64(length))
        }
        if let key = self.maskKey { buffer.writeBytes(key) }
        buffer.writeImmutableBuffer(self.data)
        return buffer
    }

    /// A text frame holding `text`.
    static func text(_ text: String, fin: Bool = true) -> WebSocketFrame {
        .bytes(.text, Array(text.utf8), fin: fin)
    }

    /// A binary frame holding `message`.
    static func binary(_ message: WireMessage) -> WebSocketFrame {
        .masked(fin: true, opcode: .binary, data: message.encoded())
    }

    /// A frame as a client sends it: masked (RFC 6455 section 5.1; the server refuses unmasked ones).
    static func masked(fin: Bool, opcode: WebSocketOpcode, data: ByteBuffer) -> WebSocketFrame {
        let key: WebSocketMaskingKey = [0x1F, 0x2E, 0x3D, 0x4C]
        var masked = data
        masked.webSocketMask(key)
        return WebSocketFrame(fin: fin, opcode: opcode, maskKey: key, data: masked)
    }

    /// A frame with `opcode` and raw `bytes`.
    static func bytes(_ opcode: WebSocketOpcode, _ bytes: [UInt8], fin: Bool = true) -> WebSocketFrame {
        .masked(fin: fin, opcode: opcode, data: ByteBuffer(bytes: bytes))
    }

    /// A close frame with `code` in its body.
    static func close(_ code: UInt16) -> WebSocketFrame {
        var body = ByteBuffer()
        body.writeInteger(code)
        return .masked(fin: true, opcode: .connectionClose, data: body)
    }

    /// The payload as a string (for text frames).
    var textValue: String { String(buffer: self.unmaskedData) }

    /// The payload decoded as a wire message (for binary frames).
    var message: WireMessage? { try? WireMessage.decode(self.unmaskedData) }

    /// The status code of a close frame.
    var closeCode: UInt16? {
        var data = self.unmaskedData
        return data.readInteger(as: UInt16.self)
    }
}
