import Foundation
import NIOCore
import Testing
import XferProtocol

/// Checks the upload compressor (libdeflate): its zlib streams inflate with zlib, never grow a block, and the
/// sampler tells text from random data.
@Suite struct BlockCompressorTests {
    /// `bytes` encoded by `compressor` after `prefix` bytes already in the buffer: the encoding and the payload.
    static func encode(_ bytes: [UInt8], _ compressor: BlockCompressor, prefix: Int = 0) -> (BlockEncoding, [UInt8]) {
        var out = ByteBuffer()
        out.writeRepeatingByte(0xAA, count: prefix)
        let encoding = bytes.withUnsafeBytes { compressor.encode($0, into: &out) }
        #expect(out.readBytes(length: prefix) == [UInt8](repeating: 0xAA, count: prefix), "the prefix was touched")
        return (encoding, Array(out.readableBytesView))
    }

    /// `payload` restored by zlib (the server's decoder).
    static func inflate(_ payload: [UInt8], _ encoding: BlockEncoding, rawLength: Int) throws -> [UInt8] {
        var out = ByteBuffer()
        try payload.withUnsafeBytes {
            try BlockCodec(level: 0).decode($0, encoding: encoding, rawLength: rawLength, into: &out)
        }
        return Array(out.readableBytesView)
    }

    /// Text with words in a pseudo-random order: compressible, but not trivially.
    static func words(_ count: Int, seed: UInt32) -> [UInt8] {
        let words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet\n"]
        var state = seed
        var text: [UInt8] = []
        while text.count < count {
            state = state &* 1_103_515_245 &+ 12345
            text.append(contentsOf: words[Int(state >> 16) % words.count].utf8)
            text.append(UInt8(ascii: " "))
        }
        return Array(text.prefix(count))
    }

    @Test func textBecomesAZlibStreamThatZlibRestores() throws {
        let compressor = BlockCompressor(level: 1)
        let text = Self.words(1 << 20, seed: 1)
        let (encoding, payload) = Self.encode(text, compressor, prefix: 37)
        #expect(encoding == .zlib)
        #expect(payload.count < text.count / 2)
        // RFC 1950 header: deflate with a 32 KiB window (CMF 0x78), no preset dictionary (FDICT clear).
        #expect(payload[0] == 0x78)
        #expect(payload[1] & 0x20 == 0)
        #expect((UInt16(payload[0]) << 8 | UInt16(payload[1])) % 31 == 0)
        #expect(try Self.inflate(payload, encoding, rawLength: text.count) == text)
    }

    @Test func everyLevelRoundTripsAndHigherLevelsAreNotLarger() throws {
        let text = Self.words(256 * 1024, seed: 2)
        var sizes: [Int: Int] = [:]
        for level in 1...9 {
            let (encoding, payload) = Self.encode(text, BlockCompressor(level: level))
            #expect(encoding == .zlib, "level \(level)")
            #expect(try Self.inflate(payload, encoding, rawLength: text.count) == text, "level \(level)")
            sizes[level] = payload.count
        }
        #expect(try #require(sizes[9]) <= (try #require(sizes[1])))
    }

    @Test func randomDataIsSentRawAndNeverGrows() {
        let compressor = BlockCompressor(level: 1)
        var generator = SplitMix64(seed: 9)
        let random = (0..<(256 * 1024)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        #expect(!random.withUnsafeBytes { compressor.looksCompressible($0) })
        // Even when asked to, deflate output that would not be smaller is dropped for the raw bytes.
        let (encoding, payload) = Self.encode(random, compressor, prefix: 5)
        #expect(encoding == .raw)
        #expect(payload == random)
    }

    @Test func levelZeroNeverCompressesButStillSamples() {
        let text = Self.words(64 * 1024, seed: 3)
        let compressor = BlockCompressor(level: 0)
        let (encoding, payload) = Self.encode(text, compressor)
        #expect(encoding == .raw)
        #expect(payload == text)
        #expect(text.withUnsafeBytes { compressor.looksCompressible($0) })
    }

    @Test func tinyAndEmptyBlocksTravelRaw() {
        let compressor = BlockCompressor(level: 1)
        for count in [0, 1, 2] {
            let bytes = [UInt8](repeating: 65, count: count)
            let (encoding, payload) = Self.encode(bytes, compressor)
            #expect(encoding == .raw, "\(count) bytes")
            #expect(payload == bytes)
        }
    }

    /// Not only a block's start is sampled: text at its end (a log appended to a binary) is found too.
    @Test func theSamplerLooksAtSeveralSpots() {
        let compressor = BlockCompressor(level: 1)
        var generator = SplitMix64(seed: 4)
        var mixed = (0..<(1 << 20)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        #expect(!mixed.withUnsafeBytes { compressor.looksCompressible($0) })
        mixed.replaceSubrange((mixed.count - 8192)..., with: Self.words(8192, seed: 5))
        #expect(mixed.withUnsafeBytes { compressor.looksCompressible($0) })
        let text = Self.words(1 << 20, seed: 6)
        #expect(text.withUnsafeBytes { compressor.looksCompressible($0) })
    }

    /// The same block gives the same stream whichever compressor (thread) encodes it: `--threads` never changes
    /// what is sent.
    @Test func encodingIsDeterministicAcrossCompressors() {
        let blocks = (0..<4).map { Self.words(300_000 + $0 * 1000, seed: UInt32(10 + $0)) }
        let first = BlockCompressor(level: 1)
        let second = BlockCompressor(level: 1)
        for block in blocks {
            let a = Self.encode(block, first)
            let b = Self.encode(block, second)
            #expect(a.0 == b.0)
            #expect(a.1 == b.1)
        }
    }
}
