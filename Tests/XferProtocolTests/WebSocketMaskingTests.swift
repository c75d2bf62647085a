import NIOCore
import NIOWebSocket
import Testing
import XferProtocol

/// The fast masking gives the bytes NIO's reference implementation gives, for every length and phase.
struct WebSocketMaskingTests {
    @Test(arguments: [0, 1, 3, 7, 8, 9, 63, 64, 65, 1000, 4099])
    func matchesNIOsMaskingForEveryPhase(_ length: Int) {
        let key: [UInt8] = [0x12, 0xA5, 0x00, 0xFF]
        let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        for phase in 0..<4 {
            var expected = ByteBuffer(bytes: bytes)
            expected.webSocketMask(WebSocketMaskingKey(key)!, indexOffset: phase)
            var actual = bytes
            actual.withUnsafeMutableBytes { WebSocketMasking.apply($0, key: key, phase: phase) }
            #expect(actual == Array(expected.readableBytesView), "length \(length), phase \(phase)")
        }
    }

    @Test func maskingTwiceRestoresTheData() {
        let key: [UInt8] = [1, 2, 3, 4]
        let original = ByteBuffer(bytes: Array(0..<200))
        let masked = WebSocketMasking.unmasked(original, key: key, allocator: ByteBufferAllocator())
        #expect(masked != original)
        #expect(WebSocketMasking.unmasked(masked, key: key, allocator: ByteBufferAllocator()) == original)
    }

    @Test(arguments: [10, 200, 70_000])
    func clientHeadersFollowRFC6455LengthForms(_ length: Int) {
        var buffer = ByteBuffer(repeating: 0, count: WebSocketMasking.maxClientHeaderSize)
        let key: [UInt8] = [9, 8, 7, 6]
        let start = WebSocketMasking.writeClientBinaryHeader(
            length: length,
            key: key,
            into: &buffer,
            reserved: WebSocketMasking.maxClientHeaderSize
        )
        let header = Array(buffer.readableBytesView.dropFirst(start))
        #expect(header.first == 0x82)
        #expect(Array(header.suffix(4)) == key)
        switch length {
        case ..<126: #expect(header.count == 6 && header[1] == 0x80 | UInt8(length))
        case ...0xFFFF: #expect(header.count == 8 && header[1] == 0x80 | 126)
        default: #expect(header.count == 14 && header[1] == 0x80 | 127)
        }
    }
}
