import Foundation
import NIOCore
import Testing
import XferProtocol

/// Checks block compression: the CRC, the raw fallback for incompressible data, and a bounded inflate.
@Suite struct BlockCodecTests {
    /// `bytes` encoded by `codec`: the encoding and the payload.
    static func encode(_ bytes: [UInt8], codec: BlockCodec) -> (BlockEncoding, [UInt8]) {
        var out = ByteBuffer()
        let encoding = bytes.withUnsafeBytes { codec.encode($0, into: &out) }
        return (encoding, Array(out.readableBytesView))
    }

    /// `payload` decoded, or the error.
    static func decode(
        _ payload: [UInt8],
        _ encoding: BlockEncoding,
        rawLength: Int,
        codec: BlockCodec,
        into out: inout ByteBuffer
    ) -> XferError? {
        do {
            try payload.withUnsafeBytes { try codec.decode($0, encoding: encoding, rawLength: rawLength, into: &out) }
            return nil
        } catch let error as XferError {
            return error
        } catch {
            Issue.record("decode threw \(error), not an XferError")
            return nil
        }
    }

    static func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var generator = SplitMix64(seed: seed)
        return (0..<count).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
    }

    static let text = Array(String(repeating: "the quick brown fox jumps over the lazy dog\n", count: 3000).utf8)

    @Test func crc32MatchesTheStandardCheckValue() {
        #expect(Array("123456789".utf8).withUnsafeBytes { BlockCodec.crc32($0) } == 0xCBF4_3926)
        #expect([UInt8]().withUnsafeBytes { BlockCodec.crc32($0) } == 0)
    }

    /// The folded CRC-32 must equal zlib's for every length (the fold starts at 64 bytes, steps by 64, then 16, and
    /// ends with a tail) and every alignment, including a whole 1 MiB block.
    @Test func crc32EqualsZlibsAtEveryLengthAndAlignment() {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<(1 << 20) + 16).map { _ in UInt8.random(in: 0...255, using: &generator) }
        bytes.withUnsafeBytes { all in
            for count in Array(0...300) + [1023, 4096, 65_537, 1 << 20] {
                for start in [0, 1, 7, 15] {
                    let slice = UnsafeRawBufferPointer(rebasing: all[start..<(start + count)])
                    #expect(BlockCodec.crc32(slice) == BlockCodec.referenceCRC32(slice), "length \(count) at +\(start)")
                }
            }
        }
        #if arch(x86_64)
        // Every x86_64 machine this runs on has PCLMULQDQ: make sure the fast path is the one being checked.
        #expect(BlockCodec.crc32IsAccelerated)
        #endif
    }

    @Test func compressibleBlocksAreZlibAndRoundTrip() throws {
        let codec = BlockCodec(level: 1)
        let (encoding, payload) = Self.encode(Self.text, codec: codec)
        #expect(encoding == .zlib)
        #expect(payload.count < Self.text.count / 4)
        var out = ByteBuffer()
        #expect(Self.decode(payload, encoding, rawLength: Self.text.count, codec: codec, into: &out) == nil)
        #expect(Array(out.readableBytesView) == Self.text)
    }

    @Test func randomBlocksTravelRawWithoutCompression() {
        let codec = BlockCodec(level: 6)
        let random = Self.randomBytes(256 * 1024, seed: 1)
        let (encoding, payload) = Self.encode(random, codec: codec)
        #expect(encoding == .raw)
        #expect(payload == random)
        #expect(!random.withUnsafeBytes { codec.looksCompressible($0) })
    }

    @Test func entropyTellsRandomFromTextAndBase64() {
        let random = Self.randomBytes(4096, seed: 7)
        #expect(random.withUnsafeBytes { BlockCodec.entropy($0) } > BlockCodec.incompressibleEntropy)
        #expect(Self.text.withUnsafeBytes { BlockCodec.entropy($0) } < 6)
        let base64 = Array(Data(random).base64EncodedString().utf8)
        let entropy = base64.withUnsafeBytes { BlockCodec.entropy($0) }
        #expect(entropy > 5.9 && entropy < 6.01)
        #expect([UInt8](repeating: 65, count: 4096).withUnsafeBytes { BlockCodec.entropy($0) } == 0)
        #expect([UInt8]().withUnsafeBytes { BlockCodec.entropy($0) } == 0)
    }

    /// High-entropy bytes skip deflate; bytes that deflate well despite a high-entropy alphabet (a short random
    /// run repeated) still score below the threshold and are compressed.
    @Test func repeatedRandomRunsAreStillCompressed() throws {
        let codec = BlockCodec(level: 1)
        let run = Self.randomBytes(64, seed: 3)
        let repeated = Array((0..<(256 * 1024 / 64)).map { _ in run }.joined())
        #expect(repeated.withUnsafeBytes { codec.looksCompressible($0) })
        let (encoding, payload) = Self.encode(repeated, codec: codec)
        #expect(encoding == .zlib)
        #expect(payload.count < repeated.count / 10)
    }

    @Test func levelZeroNeverCompresses() {
        let (encoding, payload) = Self.encode(Self.text, codec: BlockCodec(level: 0))
        #expect(encoding == .raw)
        #expect(payload == Self.text)
    }

    @Test func oneCodecIsReusableAcrossBlocks() {
        let codec = BlockCodec(level: 1)
        for seed: UInt64 in 1...5 {
            let block = Array(String(repeating: "block \(seed) ", count: 500 * Int(seed)).utf8)
            let (encoding, payload) = Self.encode(block, codec: codec)
            var out = ByteBuffer()
            #expect(Self.decode(payload, encoding, rawLength: block.count, codec: codec, into: &out) == nil)
            #expect(Array(out.readableBytesView) == block)
        }
    }

    @Test func inflatingPastTheDeclaredSizeIsRefusedAndWritesNothing() {
        let codec = BlockCodec(level: 9)
        let bomb = [UInt8](repeating: 0, count: 4 << 20)
        let (encoding, payload) = Self.encode(bomb, codec: codec)
        #expect(encoding == .zlib)
        #expect(payload.count < 16 * 1024)
        var out = ByteBuffer(string: "kept")
        let error = Self.decode(payload, .zlib, rawLength: 64 * 1024, codec: codec, into: &out)
        #expect(error?.code == .corruptBlock)
        #expect(String(buffer: out) == "kept", "the refused block left nothing behind")
        #expect(out.capacity < 1 << 20, "output stayed bounded by the declared size")
    }

    @Test func inflatingShortOfTheDeclaredSizeIsCorrupt() {
        let codec = BlockCodec(level: 1)
        let (_, payload) = Self.encode(Self.text, codec: codec)
        var out = ByteBuffer()
        #expect(
            Self.decode(payload, .zlib, rawLength: Self.text.count + 1, codec: codec, into: &out)?.code == .corruptBlock
        )
        #expect(out.readableBytes == 0)
    }

    @Test func truncatedOrGarbageZlibIsCorrupt() {
        let codec = BlockCodec(level: 1)
        let (_, payload) = Self.encode(Self.text, codec: codec)
        var out = ByteBuffer()
        let cut = Array(payload.dropLast(10))
        #expect(Self.decode(cut, .zlib, rawLength: Self.text.count, codec: codec, into: &out)?.code == .corruptBlock)
        let garbage = Self.randomBytes(500, seed: 2)
        #expect(Self.decode(garbage, .zlib, rawLength: 1000, codec: codec, into: &out)?.code == .corruptBlock)
        #expect(Self.decode([], .zlib, rawLength: 0, codec: codec, into: &out)?.code == .corruptBlock)
        #expect(out.readableBytes == 0)
        // The codec recovers: a good block decodes after the bad ones.
        #expect(Self.decode(payload, .zlib, rawLength: Self.text.count, codec: codec, into: &out) == nil)
    }

    @Test func bytesAfterTheZlibStreamAreCorrupt() {
        let codec = BlockCodec(level: 1)
        let (_, payload) = Self.encode(Self.text, codec: codec)
        var out = ByteBuffer()
        let error = Self.decode(payload + [0, 1, 2], .zlib, rawLength: Self.text.count, codec: codec, into: &out)
        #expect(error?.code == .corruptBlock)
    }

    @Test func rawPayloadMustMatchTheDeclaredLength() {
        let codec = BlockCodec(level: 1)
        var out = ByteBuffer()
        #expect(Self.decode([1, 2, 3], .raw, rawLength: 4, codec: codec, into: &out)?.code == .corruptBlock)
        #expect(Self.decode([1, 2, 3], .raw, rawLength: 2, codec: codec, into: &out)?.code == .corruptBlock)
        #expect(Self.decode([1, 2, 3], .raw, rawLength: 3, codec: codec, into: &out) == nil)
        #expect(Array(out.readableBytesView) == [1, 2, 3])
    }

    /// The server inflates with libdeflate and falls back to zlib for whatever libdeflate does not accept: every
    /// stream zlib accepts must be accepted with the same bytes, and a refusal must carry zlib's message. Every
    /// single-bit corruption of a stream (header, Huffman data and Adler-32 alike), a cut at every length, and bytes
    /// after the end.
    @Test func libdeflateAndZlibAgreeOnEveryCorruptionOfAStream() {
        let text = Array(Self.text.prefix(2000)) + Array("tail: \(Self.randomBytes(64, seed: 9))".utf8)
        let (encoding, stream) = Self.encode(text, codec: BlockCodec(level: 1))
        #expect(encoding == .zlib)
        let fast = BlockCodec(level: 1)
        let zlibOnly = BlockCodec(level: 1)
        zlibOnly.inflatesWithLibdeflate = false
        var variants: [[UInt8]] = [stream, stream + [0], Array(stream.dropLast())]
        for index in stream.indices {
            for bit in 0..<8 {
                var flipped = stream
                flipped[index] ^= 1 << bit
                variants.append(flipped)
            }
            variants.append(Array(stream[..<index]))
        }
        var accepted = 0
        for (number, variant) in variants.enumerated() {
            for rawLength in [text.count, text.count - 1] {
                var mine = ByteBuffer()
                var theirs = ByteBuffer()
                let myError = Self.decode(variant, .zlib, rawLength: rawLength, codec: fast, into: &mine)
                let theirError = Self.decode(variant, .zlib, rawLength: rawLength, codec: zlibOnly, into: &theirs)
                if theirError == nil {
                    #expect(myError == nil, "variant \(number), raw length \(rawLength): zlib accepts it")
                    #expect(mine == theirs, "variant \(number), raw length \(rawLength)")
                } else if let myError {
                    #expect(myError.message == theirError?.message, "variant \(number), raw length \(rawLength)")
                }
                if myError == nil {
                    // Only the padding bits after the last Huffman code may flip unnoticed: the same bytes.
                    accepted += 1
                    #expect(Array(mine.readableBytesView) == text, "variant \(number) accepted with other bytes")
                }
            }
        }
        #expect(accepted >= 1, "the intact stream is accepted")
    }

    /// Found by FuzzWireMessage: a fixed-Huffman stream using a reserved length symbol (286 or 287, RFC 1951
    /// section 3.2.6) with an Adler-32 that matches libdeflate's reading. zlib refuses it ("invalid literal/length
    /// code"); libdeflate reads it. The server takes it only as exactly the declared length (the receiver then checks
    /// the CRC-32 of those bytes); with another length it is refused with zlib's message.
    @Test func aStreamOnlyLibdeflateReadsIsTakenOnlyAtItsExactLength() {
        let stream: [UInt8] = [
            0x78, 0x9C, 0xCB, 0x48, 0xCD, 0xC9, 0xC9, 0x57, 0x28, 0xCF, 0x2F, 0xCA, 0x49, 0x51, 0xC8, 0x18, 0x67,
            0x0F, 0x3B, 0x36, 0x00, 0xC4, 0xD8, 0xB3, 0x61,
        ]
        let zlibOnly = BlockCodec(level: 1)
        zlibOnly.inflatesWithLibdeflate = false
        var out = ByteBuffer()
        #expect(Self.decode(stream, .zlib, rawLength: 480, codec: zlibOnly, into: &out)?.code == .corruptBlock)
        let codec = BlockCodec(level: 1)
        #expect(Self.decode(stream, .zlib, rawLength: 480, codec: codec, into: &out) == nil)
        #expect(out.readableBytes == 480)
        #expect(String(buffer: out).hasPrefix("hello world hello world"))
        var short = ByteBuffer()
        let error = Self.decode(stream, .zlib, rawLength: 479, codec: codec, into: &short)
        #expect(error?.code == .corruptBlock)
        #expect(error?.message.contains("zlib status") == true)
        #expect(short.readableBytes == 0)
    }

    @Test func corruptBlocksAreRejectedData() {
        #expect(XferError.exitStatus(for: .corruptBlock) == 65)
    }
}

/// Blocks compressed with the previous block's tail as a preset dictionary.
struct BlockCodecDictionaryTests {
    @Test func aDictionaryBlockRoundTripsAndShrinksMore() throws {
        // Pseudo-random words: compressible, but without long repeats inside one block. The block repeats
        // passages of the data before it, which only the dictionary lets zlib see.
        let words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
        var state: UInt32 = 12345
        var text: [UInt8] = []
        while text.count < 32 * 1024 {
            state = state &* 1_103_515_245 &+ 12345
            text.append(contentsOf: words[Int(state >> 16) % words.count].utf8)
            text.append(UInt8(ascii: " "))
        }
        let dictionary = Array(text.prefix(32 * 1024))
        let block = Array(dictionary[16384...] + dictionary[..<16384])
        let codec = BlockCodec(level: 1)
        var plain = ByteBuffer()
        var primed = ByteBuffer()
        _ = block.withUnsafeBytes { codec.encode($0, into: &plain, knownCompressible: true) }
        let encoding = block.withUnsafeBytes {
            codec.encode($0, into: &primed, knownCompressible: true, dictionary: dictionary)
        }
        #expect(encoding == .zlib)
        #expect(primed.readableBytes < plain.readableBytes)
        var restored = ByteBuffer()
        try primed.withUnsafeReadableBytes {
            try codec.decode($0, encoding: .zlib, rawLength: block.count, into: &restored, dictionary: dictionary)
        }
        #expect(Array(restored.readableBytesView) == block)
        var withoutDictionary = ByteBuffer()
        #expect(throws: XferError.self) {
            try primed.withUnsafeReadableBytes {
                try codec.decode($0, encoding: .zlib, rawLength: block.count, into: &withoutDictionary)
            }
        }
    }
}
