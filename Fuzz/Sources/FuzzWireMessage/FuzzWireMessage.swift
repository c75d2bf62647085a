import NIOCore
import XferProtocol

/// libFuzzer entry point: every binary frame a peer can send, through `WireMessage.decode`; a decoded block is
/// then inflated by `BlockCodec.decode` (bounded by its declared length, capped at 1 MiB here), once as the
/// server does (libdeflate, zlib when libdeflate does not accept the stream) and once with zlib alone.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWireMessage(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    var buffer = ByteBufferAllocator().buffer(capacity: size)
    buffer.writeBytes(bytes)
    guard let message = try? WireMessage.decode(buffer) else { return 0 }
    if case .block(let block) = message {
        // As the server decodes (libdeflate, zlib for what libdeflate does not take) and with zlib alone: every
        // stream zlib accepts must be accepted with the same bytes; what only libdeflate accepts (a reserved symbol
        // zlib refuses, see BlockCodec.decode) must still be exactly the declared length.
        let codec = BlockCodec(level: 1)
        let zlibOnly = BlockCodec(level: 1)
        zlibOnly.inflatesWithLibdeflate = false
        var out = ByteBufferAllocator().buffer(capacity: 0)
        var reference = ByteBufferAllocator().buffer(capacity: 0)
        let rawLength = min(Int(block.rawLength), 1 << 20)
        let (fast, slow) = block.payload.withUnsafeReadableBytes { payload in
            (
                (try? codec.decode(payload, encoding: block.encoding, rawLength: rawLength, into: &out)) != nil,
                (try? zlibOnly.decode(payload, encoding: block.encoding, rawLength: rawLength, into: &reference)) != nil
            )
        }
        if slow {
            precondition(fast, "zlib accepts a block that the server's decode refuses")
            precondition(out == reference, "libdeflate and zlib inflate to different bytes")
        }
        precondition(out.readableBytes == (fast ? rawLength : 0), "decode left \(out.readableBytes) bytes")
    }
    // What decodes must encode and decode to the same message.
    let again = try? WireMessage.decode(message.encoded(allocator: ByteBufferAllocator()))
    precondition(again == message, "re-encoding changed \(message)")
    return 0
}
