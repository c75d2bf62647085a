import CXferAccel
import CXferDeflate
import CXferZlib
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How one upload block travels: compressed with zlib, or raw when that would not make it smaller.
public enum BlockEncoding: UInt8, Sendable {
    /// The payload is the block's bytes as they are.
    case raw = 0
    /// The payload is a zlib stream (RFC 1950) that inflates to exactly the block's raw length.
    case zlib = 1
}

/// Compresses, checks and restores upload blocks with the system zlib.
///
/// `@unchecked Sendable` but not thread-safe: each worker queue owns one codec and reuses its z_streams (`deflateReset` is much cheaper
/// than `deflateInit2`).
public final class BlockCodec: @unchecked Sendable {
    /// zlib level, 1 (fast, the default: ratio close to `gzip -1`) to 9; 0 disables compression.
    public let level: Int32
    private var deflater = z_stream()
    private var sampler = z_stream()
    private var inflater = z_stream()
    private var scratch: [UInt8] = []
    /// libdeflate's whole-buffer decompressor: the zlib streams of a block inflate 2.7 times faster with it than
    /// with zlib (1061 against 386 MB/s per core on a text corpus here), and a block is always whole in memory.
    private let decompressor: OpaquePointer
    /// Whether `decode` tries libdeflate first (true; false: zlib only, for comparing the two).
    public var inflatesWithLibdeflate = true

    /// A codec compressing at `level` (0 = never compress).
    public init(level: Int) {
        precondition((0...9).contains(level), "zlib level must be 0...9, got \(level)")
        self.level = Int32(level)
        let effective = Int32(max(level, 1))
        precondition(cxfer_deflate_init(&self.deflater, effective) == Z_OK, "deflateInit2 failed")
        // The sampler always uses level 1: it only asks "does this shrink at all?".
        precondition(cxfer_deflate_init(&self.sampler, 1) == Z_OK, "deflateInit2 failed")
        precondition(cxfer_inflate_init(&self.inflater) == Z_OK, "inflateInit2 failed")
        guard let decompressor = libdeflate_alloc_decompressor() else {
            preconditionFailure("libdeflate_alloc_decompressor failed: out of memory")
        }
        self.decompressor = decompressor
    }

    deinit {
        deflateEnd(&self.deflater)
        deflateEnd(&self.sampler)
        inflateEnd(&self.inflater)
        libdeflate_free_decompressor(self.decompressor)
    }

    /// The CRC-32 (zlib's, ISO 3309) of `bytes`: folded with PCLMULQDQ where the CPU has it (about 14 GB/s here,
    /// zlib's table about 4), zlib's otherwise.
    public static func crc32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress else { return 0 }
        return xfer_crc32(0, base, bytes.count)
    }

    /// zlib's own CRC-32 of `bytes`, which `crc32` must always equal.
    public static func referenceCRC32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress else { return 0 }
        return xfer_crc32_reference(0, base, bytes.count)
    }

    /// Whether `crc32` runs on the CPU's carry-less multiplication.
    public static var crc32IsAccelerated: Bool { xfer_crc32_accelerated() != 0 }

    /// Bytes sampled from a block to decide whether compressing it is worth the CPU.
    public static let sampleSize = 4096
    /// Spots sampled across a block (start, middle, end...): media files often start with a compressible header.
    public static let sampleCount = 4

    /// Byte entropy (bits per byte) at or above which a sample is taken for random or already compressed: Huffman
    /// coding alone cannot save 10% of such bytes. Measured on 4 KiB samples: random data 7.95, gzip, zstd and xz
    /// output 7.89 or more, PNG images 7.7-7.9 (median); text 4.3-4.5, base64 6.0, hex 4.0.
    public static let incompressibleEntropy = 7.6

    /// Order-0 entropy of `bytes` in bits per byte (0 for no bytes): a byte histogram, about 3 us per 4 KiB.
    public static func entropy(_ bytes: UnsafeRawBufferPointer) -> Double {
        guard !bytes.isEmpty else { return 0 }
        return withUnsafeTemporaryAllocation(of: Int32.self, capacity: 256) { counts in
            counts.initialize(repeating: 0)
            for byte in bytes { counts[Int(byte)] &+= 1 }
            let total = Double(bytes.count)
            var sum = 0.0
            for count in counts where count > 0 {
                let share = Double(count) / total
                sum -= share * log2(share)
            }
            return sum
        }
    }

    /// Whether `raw` looks compressible: level-1 deflate of a few spread samples must save at least 10%.
    ///
    /// The samples' byte entropy is looked at first: when every one scores at least `incompressibleEntropy`, the
    /// block is taken for random or already compressed data without running deflate at all (deflate on such bytes
    /// runs at about 65 MB/s, and four probes cost 0.3 ms per 1 MiB block, 15% of a random upload's client CPU).
    /// Random or already-compressed data (JPEG, MP4) therefore burns almost no compression CPU.
    public func looksCompressible(_ raw: UnsafeRawBufferPointer) -> Bool {
        guard raw.count > 256 else { return raw.count > 64 }
        let size = min(Self.sampleSize, raw.count)
        let spots = raw.count <= size * Self.sampleCount ? 1 : Self.sampleCount
        func sample(_ spot: Int) -> UnsafeRawBufferPointer {
            let start = spots == 1 ? 0 : (raw.count - size) * spot / (spots - 1)
            return UnsafeRawBufferPointer(rebasing: raw[start..<(start + size)])
        }
        if (0..<spots).allSatisfy({ Self.entropy(sample($0)) >= Self.incompressibleEntropy }) {
            return false
        }
        var input = 0
        var output = 0
        if self.scratch.count < Int(deflateBound(&self.sampler, uLong(size))) {
            self.scratch = [UInt8](repeating: 0, count: Int(deflateBound(&self.sampler, uLong(size))) + 64)
        }
        for spot in 0..<spots {
            let probe = sample(spot)
            deflateReset(&self.sampler)
            let produced = self.scratch.withUnsafeMutableBytes { out -> Int in
                self.sampler.next_in = UnsafeMutablePointer(
                    mutating: probe.baseAddress!.assumingMemoryBound(to: Bytef.self)
                )
                self.sampler.avail_in = uInt(probe.count)
                self.sampler.next_out = out.baseAddress!.assumingMemoryBound(to: Bytef.self)
                self.sampler.avail_out = uInt(out.count)
                _ = deflate(&self.sampler, Z_FINISH)
                return out.count - Int(self.sampler.avail_out)
            }
            input += size
            output += produced
        }
        return output * 10 < input * 9
    }

    /// Encodes `raw` for the wire: zlib when the level allows it, the block looks compressible and the result is
    /// smaller; raw otherwise. Appends the payload to `out` and returns the encoding used.
    /// `knownCompressible` skips the sampling when the caller has just done it.
    ///
    /// A non-empty `dictionary` (the up to 32 KiB of the upload before this block) is set as zlib's preset
    /// dictionary (RFC 1950 FDICT), so that a block compresses almost as well as in one long stream.
    public func encode(
        _ raw: UnsafeRawBufferPointer,
        into out: inout ByteBuffer,
        knownCompressible: Bool = false,
        dictionary: [UInt8] = []
    ) -> BlockEncoding {
        if self.level > 0 && (knownCompressible || self.looksCompressible(raw)) {
            let start = out.writerIndex
            let bound = Int(deflateBound(&self.deflater, uLong(raw.count)))
            let written = out.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { target -> Int in
                deflateReset(&self.deflater)
                if !dictionary.isEmpty {
                    dictionary.withUnsafeBufferPointer {
                        _ = deflateSetDictionary(&self.deflater, $0.baseAddress, uInt($0.count))
                    }
                }
                self.deflater.next_in = UnsafeMutablePointer(
                    mutating: raw.baseAddress!.assumingMemoryBound(to: Bytef.self)
                )
                self.deflater.avail_in = uInt(raw.count)
                self.deflater.next_out = target.baseAddress!.assumingMemoryBound(to: Bytef.self)
                self.deflater.avail_out = uInt(target.count)
                let status = deflate(&self.deflater, Z_FINISH)
                guard status == Z_STREAM_END else { return 0 }
                return target.count - Int(self.deflater.avail_out)
            }
            if written > 0 && written < raw.count {
                return .zlib
            }
            out.moveWriterIndex(to: start)
        }
        out.writeBytes(raw)
        return .raw
    }

    /// Restores a block's raw bytes from `payload` into `out`, never producing more than `rawLength` bytes.
    ///
    /// Throws `corrupt_block` when the payload is not a complete zlib stream, inflates past `rawLength` (a
    /// decompression bomb or a corrupted length), or falls short of it.
    ///
    /// `dictionary` is supplied when the stream asks for one (FDICT): the receiver's last 32 KiB before the block.
    ///
    /// A stream is inflated by libdeflate when it has no preset dictionary (libdeflate has none) and is exactly
    /// right: whole, with a good Adler-32, nothing after it, exactly `rawLength` bytes. Anything else goes through
    /// zlib, which gives the verdict and its message as before, so every stream zlib accepts is accepted with the
    /// same bytes, and only a refused block pays for a second pass. libdeflate is a little more lenient than zlib
    /// with streams no compressor writes (FuzzWireMessage found one: the reserved length symbols 286 and 287 in a
    /// fixed-Huffman block, RFC 1951 section 3.2.6, which zlib refuses): such a block is accepted when it inflates to
    /// exactly `rawLength` bytes with a good Adler-32, and the receiver still checks those bytes' CRC-32 and the
    /// file's SHA-256.
    public func decode(
        _ payload: UnsafeRawBufferPointer,
        encoding: BlockEncoding,
        rawLength: Int,
        into out: inout ByteBuffer,
        dictionary: [UInt8] = []
    ) throws(XferError) {
        switch encoding {
        case .raw:
            guard payload.count == rawLength else {
                throw XferError(.corruptBlock, "raw block holds \(payload.count) bytes but declares \(rawLength)")
            }
            out.writeBytes(payload)
        case .zlib:
            if self.inflatesWithLibdeflate, self.inflateWithLibdeflate(payload, rawLength: rawLength, into: &out) {
                return
            }
            inflateReset(&self.inflater)
            var status: Int32 = Z_OK
            var produced = 0
            // One spare byte: output that fills it proves the stream inflates past the declared size.
            out.writeWithUnsafeMutableBytes(minimumWritableBytes: rawLength + 1) { target -> Int in
                self.inflater.next_in = UnsafeMutablePointer(
                    mutating: payload.baseAddress?.assumingMemoryBound(to: Bytef.self)
                )
                self.inflater.avail_in = uInt(payload.count)
                self.inflater.next_out = target.baseAddress!.assumingMemoryBound(to: Bytef.self)
                self.inflater.avail_out = uInt(rawLength + 1)
                status = inflate(&self.inflater, Z_FINISH)
                if status == Z_NEED_DICT && !dictionary.isEmpty {
                    let set = dictionary.withUnsafeBufferPointer {
                        inflateSetDictionary(&self.inflater, $0.baseAddress, uInt($0.count))
                    }
                    if set == Z_OK { status = inflate(&self.inflater, Z_FINISH) }
                }
                produced = rawLength + 1 - Int(self.inflater.avail_out)
                return min(produced, rawLength)
            }
            if produced > rawLength {
                out.moveWriterIndex(to: out.writerIndex - rawLength)
                throw XferError(.corruptBlock, "block inflates past its declared size of \(rawLength) bytes; refused")
            }
            guard status == Z_STREAM_END, produced == rawLength, self.inflater.avail_in == 0 else {
                out.moveWriterIndex(to: out.writerIndex - produced)
                throw XferError(
                    .corruptBlock,
                    "block is not a valid zlib stream of \(rawLength) bytes (zlib status \(status), \(produced) bytes)"
                )
            }
        }
    }

    /// Inflates a zlib stream without a preset dictionary into `out` with libdeflate; true when it was exactly
    /// right (see `decode`), false (and `out` unchanged) otherwise.
    private func inflateWithLibdeflate(
        _ payload: UnsafeRawBufferPointer,
        rawLength: Int,
        into out: inout ByteBuffer
    ) -> Bool {
        // RFC 1950: FLG (the second byte) bit 5 is FDICT.
        guard payload.count >= 2, payload[1] & 0x20 == 0, let input = payload.baseAddress else { return false }
        var succeeded = false
        out.writeWithUnsafeMutableBytes(minimumWritableBytes: max(rawLength, 1)) { target -> Int in
            var consumed = 0
            var produced = 0
            let result = libdeflate_zlib_decompress_ex(
                self.decompressor,
                input,
                payload.count,
                target.baseAddress,
                rawLength,
                &consumed,
                &produced
            )
            succeeded = result == LIBDEFLATE_SUCCESS && consumed == payload.count && produced == rawLength
            return succeeded ? rawLength : 0
        }
        return succeeded
    }
}
