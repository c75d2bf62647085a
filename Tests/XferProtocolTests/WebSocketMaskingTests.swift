import NIOCore
import NIOWebSocket
import Testing
import XferProtocol

/// The fast masking gives the bytes NIO's reference implementation gives, for every length and phase.
struct WebSocketMaskingTests {
    @Test(arguments: [
        0, 1, 3, 7, 8, 9, 31, 32, 33, 63, 64, 65, 127, 128, 129, 160, 161, 255, 1000, 4099, (1 << 20) + 5,
    ])
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

    /// Copying while masking (the server's unmask) gives the same bytes from any source and destination alignment.
    @Test func copyingMatchesInPlaceMaskingAtAnyAlignment() {
        let key: [UInt8] = [0xDE, 0xAD, 0xBE, 0xEF]
        let bytes = (0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 3) }
        for (from, to) in [(0, 0), (1, 0), (0, 3), (5, 17), (31, 1)] {
            for phase in 0..<4 {
                var expected = Array(bytes[from...])
                expected.withUnsafeMutableBytes { WebSocketMasking.apply($0, key: key, phase: phase) }
                var target = [UInt8](repeating: 0xAA, count: to + bytes.count - from + 2)
                bytes.withUnsafeBytes { source in
                    target.withUnsafeMutableBytes { destination in
                        WebSocketMasking.copy(
                            UnsafeRawBufferPointer(rebasing: source[from...]),
                            to: UnsafeMutableRawBufferPointer(rebasing: destination[to...]),
                            key: key,
                            phase: phase
                        )
                    }
                }
                #expect(Array(target[to..<(to + expected.count)]) == expected, "from +\(from) to +\(to) phase \(phase)")
                #expect(target.prefix(to).allSatisfy { $0 == 0xAA } && target.suffix(2) == [0xAA, 0xAA])
            }
        }
    }

    /// The key given as a little-endian word (as the server's decoder reads it) masks like the key's bytes.
    @Test(arguments: [1, 5, 64, 200, 4099])
    func aKeyWordMasksLikeTheKeyBytesAtEveryPhase(_ length: Int) {
        let key: [UInt8] = [0x12, 0xA5, 0x00, 0xFF]
        let word = UInt32(0x12) | UInt32(0xA5) << 8 | UInt32(0xFF) << 24
        let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 29 &+ 11) }
        for phase in 0..<8 {
            var expected = ByteBuffer(bytes: bytes)
            expected.webSocketMask(WebSocketMaskingKey(key)!, indexOffset: phase)
            var actual = [UInt8](repeating: 0, count: length)
            bytes.withUnsafeBytes { source in
                actual.withUnsafeMutableBytes { WebSocketMasking.copy(source, to: $0, keyWord: word, phase: phase) }
            }
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
