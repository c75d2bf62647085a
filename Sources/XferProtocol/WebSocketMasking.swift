import CXferAccel
import NIOCore

/// Fast RFC 6455 section 5.3 masking: XOR with a 4-byte key, 32 bytes at a time (AVX2, in `CXferAccel`).
///
/// NIO's `webSocketMask` works a byte at a time with a modulo per byte; on 1 MiB upload blocks it was the largest
/// single cost on both sides (30-40% of the CPU in `perf`). An 8-bytes-at-a-time Swift loop brought that to about
/// 8 GB/s; the vector loop is several times faster. Masking is its own inverse, so the same functions unmask.
public enum WebSocketMasking {
    /// The key's four bytes as a little-endian word (byte 0 lowest).
    static func word(_ key: [UInt8]) -> UInt32 {
        var word: UInt32 = 0
        for index in 0..<4 {
            word |= UInt32(key[index]) << (8 * UInt32(index))
        }
        return word
    }

    /// Copies `source` into `destination` (same length), masking with `key` from key position `phase`.
    /// The two may be the same memory (masking in place) but must not overlap otherwise.
    public static func copy(
        _ source: UnsafeRawBufferPointer,
        to destination: UnsafeMutableRawBufferPointer,
        key: [UInt8],
        phase: Int = 0
    ) {
        precondition(key.count == 4, "a masking key has 4 bytes")
        Self.copy(source, to: destination, keyWord: Self.word(key), phase: phase)
    }

    /// Copies `source` into `destination` (same length), masking with the key given as a little-endian word of its
    /// four bytes (byte 0 lowest), from key position `phase`: the form a decoder reads the key in, with no array.
    /// The two may be the same memory (masking in place) but must not overlap otherwise.
    public static func copy(
        _ source: UnsafeRawBufferPointer,
        to destination: UnsafeMutableRawBufferPointer,
        keyWord: UInt32,
        phase: Int
    ) {
        precondition(destination.count >= source.count, "destination too small")
        guard source.count > 0, let input = source.baseAddress, let output = destination.baseAddress else { return }
        let shift = UInt32(8 * (phase & 3))
        let word = shift == 0 ? keyWord : keyWord >> shift | keyWord << (32 - shift)
        xfer_mask(output, input, source.count, word)
    }

    /// Masks (or unmasks) `bytes` in place.
    public static func apply(_ bytes: UnsafeMutableRawBufferPointer, key: [UInt8], phase: Int = 0) {
        Self.copy(UnsafeRawBufferPointer(bytes), to: bytes, key: key, phase: phase)
    }

    /// A new buffer holding `data` unmasked with `key` (nil key: `data` itself).
    public static func unmasked(_ data: ByteBuffer, key: [UInt8]?, allocator: ByteBufferAllocator) -> ByteBuffer {
        guard let key, data.readableBytes > 0 else { return data }
        var out = allocator.buffer(capacity: data.readableBytes)
        Self.unmask(data, key: key, appendingTo: &out)
        return out
    }

    /// Appends `data` unmasked with `key` to `out` (one pass: copy and unmask together).
    public static func unmask(_ data: ByteBuffer, key: [UInt8], appendingTo out: inout ByteBuffer) {
        out.writeWithUnsafeMutableBytes(minimumWritableBytes: data.readableBytes) { target in
            data.withUnsafeReadableBytes { Self.copy($0, to: target, key: key) }
            return data.readableBytes
        }
    }

    /// Bytes of the longest client frame header: 2, an 8-byte length, a 4-byte key (RFC 6455 section 5.2).
    public static let maxClientHeaderSize = 14

    /// Writes a client binary frame header (FIN, opcode 2, masked) for a `length`-byte payload and `key`
    /// into the last bytes of `buffer[0..<reserved]`; returns where the header starts.
    public static func writeClientBinaryHeader(
        length: Int,
        key: [UInt8],
        into buffer: inout ByteBuffer,
        reserved: Int
    ) -> Int {
        var header: [UInt8] = [0x82]
        if length < 126 {
            header.append(0x80 | UInt8(length))
        } else if length <= 0xFFFF {
            header.append(0x80 | 126)
            header.append(UInt8(length >> 8))
            header.append(UInt8(length & 0xFF))
        } else {
            header.append(0x80 | 127)
            for shift in stride(from: 56, through: 0, by: -8) {
                header.append(UInt8(truncatingIfNeeded: UInt64(length) >> UInt64(shift)))
            }
        }
        header.append(contentsOf: key)
        let start = reserved - header.count
        buffer.setBytes(header, at: buffer.readerIndex + start)
        return start
    }
}
