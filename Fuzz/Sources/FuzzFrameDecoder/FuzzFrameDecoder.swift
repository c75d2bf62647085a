import NIOCore
import NIOEmbedded
import NIOWebSocket
import XferTransport

/// libFuzzer entry point: the server's own WebSocket frame decoder (`ClientFrameDecoder`) against NIO's
/// `WebSocketFrameDecoder`, on the same bytes cut into reads at places the input chooses.
///
/// Input: byte 0 picks the frame size limit, byte 1 seeds the read sizes, the rest is what the client sends. Both
/// decoders must hand on the same frames (NIO's unmasked), in the same order, and fail with the same error at the
/// same frame; what either does after its first error is not compared (NIO reports further input as an error,
/// ours drops it).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrameDecoder(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 2 else { return 0 }
    let input = UnsafeBufferPointer(start: data, count: size)
    let limits = [0, 1, 125, 126, 1000, 65_535, 65_536, 1 << 20]
    let maxFrameSize = limits[Int(input[0]) % limits.count]
    var seed = UInt64(input[1]) &+ 1
    let wire = Array(input[2...])

    // The same read sizes for both: 1 to 64 bytes, or the whole rest, from a small LCG.
    var reads: [Range<Int>] = []
    var start = 0
    while start < wire.count {
        seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        let pick = Int(seed >> 58)  // 0...63
        let end = pick == 0 ? wire.count : min(wire.count, start + pick)
        reads.append(start..<end)
        start = end
    }

    let ours = decode(wire, reads: reads, as: ClientFrame.self) {
        try $0.pipeline.syncOperations.addHandler(ClientFrameDecoder(maxFrameSize: maxFrameSize))
    }
    let nios = decode(wire, reads: reads, as: WebSocketFrame.self) {
        try $0.pipeline.syncOperations.addHandler(
            ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: maxFrameSize))
        )
    }
    let reference = nios.frames.map(ClientFrame.init)
    let decoded = ours.frames
    check(decoded.count == reference.count, "\(decoded.count) frames, NIO's decoder gives \(reference.count)")
    for (index, (mine, theirs)) in zip(decoded, reference).enumerated() {
        check(
            mine.fin == theirs.fin && mine.rsv1 == theirs.rsv1 && mine.rsv2 == theirs.rsv2 && mine.rsv3 == theirs.rsv3
                && mine.opcode == theirs.opcode && mine.masked == theirs.masked && mine.data == theirs.data,
            "frame \(index) differs from NIO's"
        )
    }
    check(
        ours.error.map { "\($0)" } == nios.error.map { "\($0)" },
        "error \(String(describing: ours.error)), NIO's decoder: \(String(describing: nios.error))"
    )
    return 0
}

/// The frames a decoder hands on for `wire` written in `reads`, and its first error (nothing after it is read).
private func decode<Frame>(
    _ wire: [UInt8],
    reads: [Range<Int>],
    as: Frame.Type,
    setUp: (EmbeddedChannel) throws -> Void
) -> (frames: [Frame], error: (any Error)?) {
    let channel = EmbeddedChannel()
    defer { _ = try? channel.finish() }
    do { try setUp(channel) } catch { preconditionFailure("pipeline set-up failed: \(error)") }
    var frames: [Frame] = []
    var failure: (any Error)?
    for range in reads {
        do {
            try channel.writeInbound(ByteBuffer(bytes: wire[range]))
        } catch {
            failure = error
        }
        do {
            while let frame = try channel.readInbound(as: Frame.self) { frames.append(frame) }
        } catch {
            preconditionFailure("the decoder handed on something that is not a \(Frame.self): \(error)")
        }
        if failure != nil { break }
    }
    return (frames, failure)
}

/// `precondition` with its message kept in a release build (the fuzzer's), so a crash says what differed.
private func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}
