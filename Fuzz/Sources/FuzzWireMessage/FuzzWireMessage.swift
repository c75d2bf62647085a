import NIOCore
import XferProtocol

/// libFuzzer entry point: every binary frame a peer can send, through `WireMessage.decode`; a decoded block is
/// then inflated by `BlockCodec.decode` (bounded by its declared length, capped at 1 MiB here).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWireMessage(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    var buffer = ByteBufferAllocator().buffer(capacity: size)
    buffer.writeBytes(bytes)
    guard let message = try? WireMessage.decode(buffer) else { return 0 }
    if case .block(let block) = message {
        let codec = BlockCodec(level: 1)
        var out = ByteBufferAllocator().buffer(capacity: 0)
        let rawLength = min(Int(block.rawLength), 1 << 20)
        block.payload.withUnsafeReadableBytes { payload in
            _ = try? codec.decode(payload, encoding: block.encoding, rawLength: rawLength, into: &out)
        }
    }
    // What decodes must encode and decode to the same message.
    let again = try? WireMessage.decode(message.encoded(allocator: ByteBufferAllocator()))
    precondition(again == message, "re-encoding changed \(message)")
    return 0
}
