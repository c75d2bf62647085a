import Crypto
import Dispatch
import Foundation
import NIOCore
import Synchronization
import XferEvents
import XferProtocol
import XferTransport

/// One file or stream being uploaded, across as many connections as it takes.
///
/// Reading, CRC-32, SHA-256 and the compressibility check run in order on one serial read queue, while the block's
/// bytes are in that core's cache; compression runs on one serial queue per encoder thread (`settings.encoders`,
/// blocks dealt round-robin), and everything else on the connection's event loop. A block is read straight into
/// the buffer it is sent from: a raw block is masked in place on the read queue, a compressible one is compressed
/// by its encoder into a second buffer (libdeflate, each block a zlib stream of its own, so blocks compress in
/// parallel and the machine puts them back in order). Buffers come back to a pool when the server acknowledges
/// them.
///
/// Blocks stay in memory from the moment they are read until the server acknowledges them, at most
/// `settings.window` of them: that is both the bound on memory and the replay window that lets a stream (which
/// cannot be re-read) survive a reconnect.
public final class UploadJob: @unchecked Sendable {
    // Everything below `loop` is touched only on `loop`, except where marked.
    public let loop: EventLoop
    public let source: UploadSource
    /// The name the server should save the file under.
    public let name: String
    /// The stable upload id.
    public let id: String
    public let settings: UploadSettings
    private let sink: EventSink

    private let readQueue = DispatchQueue(label: "xfer.upload.read")
    private let encodeQueues: [DispatchQueue]
    /// One per encoder queue, used only on it.
    private let compressors: [BlockCompressor]
    /// Used only on `readQueue`, to decide whether a block is worth compressing.
    private let sampler = BlockCompressor(level: 1)
    /// Frame buffers, back from the server's acknowledgement for the next reads.
    private let pool: BufferPool
    /// The machine's read generation, for the queues: it changes when the read position jumps (a resume from an
    /// offset outside the retained blocks), and work scheduled before that is stale. Written on the loop.
    private let generation = Atomic<Int>(0)
    /// Touched only on `readQueue`.
    private let hashState: HashState

    final class HashState: @unchecked Sendable {
        var hasher = SHA256()
    }

    struct PreparedBlock {
        var offset: UInt64
        var rawLength: Int
        /// The whole WebSocket frame, header included, payload masked with `maskKey`.
        var frame: ByteBuffer
        var maskKey: [UInt8]
        /// Where the payload starts in `frame` (after the WebSocket header).
        var payloadStart: Int

        /// The same block masked with a fresh key, for sending it again (RFC 6455 section 5.3 wants a new,
        /// unpredictable key for every frame).
        func remasked() -> PreparedBlock {
            var copy = self
            let key = (0..<4).map { _ in UInt8.random(in: 0...255) }
            let delta = zip(self.maskKey, key).map { $0 ^ $1 }
            let start = self.payloadStart
            copy.frame.withUnsafeMutableReadableBytes { bytes in
                WebSocketMasking.apply(UnsafeMutableRawBufferPointer(rebasing: bytes[start...]), key: delta)
                for index in 0..<4 { bytes[start - 4 + index] = key[index] }
            }
            copy.maskKey = key
            return copy
        }
    }

    /// The decisions: what to read, send, resend and release; the buffers below follow what it says.
    private var machine: UploadSenderStateMachine
    /// Blocks prepared and not sent yet, by offset (the machine's ready blocks).
    private var ready: [UInt64: PreparedBlock] = [:]
    /// Blocks sent and not acknowledged, oldest first (the machine's blocks in flight).
    private var inFlight: [PreparedBlock] = []
    private var connection: ClientConnection?
    private let progressBar: ProgressBar?
    /// Where the server resumed on the latest connection it accepted: what the server's `file_saved` reports for
    /// the connection that finished the upload.
    public var resumedFrom: UInt64? { self.machine.resumedFrom }
    /// Where the upload stands after a session ended with `failure` (nil: a normal close); on the loop.
    public func sessionEnded(failure: XferError?, afterWelcome: Bool) -> UploadSenderStateMachine.SessionVerdict {
        self.machine.sessionEnded(failure: failure, afterWelcome: afterWelcome, name: self.name)
    }

    /// A job uploading `source` as `name`.
    public init(
        source: UploadSource,
        name: String,
        settings: UploadSettings,
        loop: EventLoop,
        sink: EventSink,
        showProgress: Bool
    ) {
        self.source = source
        self.name = name
        self.id = source.uploadID(savedAs: name)
        self.settings = settings
        self.loop = loop
        self.sink = sink
        // More encoders than blocks in the window would never get work.
        let encoders = min(settings.encoders, settings.window)
        self.encodeQueues = (0..<encoders).map { DispatchQueue(label: "xfer.upload.encode.\($0)") }
        self.compressors = (0..<encoders).map { _ in BlockCompressor(level: settings.level) }
        self.hashState = HashState()
        // Room for a whole frame, including zlib's worst case of slight growth on incompressible input.
        self.pool = BufferPool(
            capacity: Self.payloadStart + settings.blockSize + settings.blockSize / 64 + 4096,
            limit: settings.window + encoders + 2
        )
        self.machine = UploadSenderStateMachine(
            blockSize: settings.blockSize,
            window: settings.window,
            isSeekable: source.isSeekable,
            size: source.size
        )
        self.ready.reserveCapacity(settings.window)
        self.inFlight.reserveCapacity(settings.window)
        self.progressBar = showProgress ? ProgressBar(name: name, total: source.size) : nil
    }

    /// What the final status reports: bytes, SHA-256 (hex) and where the finishing connection resumed.
    public var summary: (bytes: UInt64, sha256: String, resumedFrom: UInt64)? {
        guard let end = self.machine.total, let digest = self.machine.sha256 else { return nil }
        return (end, Hex.encode(digest), self.resumedFrom ?? 0)
    }

    /// Bytes the server has acknowledged as verified (kept for a resume when the upload fails).
    public var acknowledgedBytes: UInt64 { self.machine.acknowledgedBytes }

    /// The offer for this upload (the server checks it with the same type).
    var offer: UploadOffer {
        UploadOffer(
            id: self.id,
            name: self.name,
            size: self.source.size,
            blockSize: self.settings.blockSize,
            mtime: String(self.source.mtimeNanos),
            kind: self.source.isSeekable ? .file : .stream
        )
    }

    // MARK: Connection lifecycle (on the loop)

    func attach(_ connection: ClientConnection) {
        switch self.machine.connected() {
        case .sendOffer:
            self.connection = connection
            connection.writeControl(.offer(self.offer.fields))
            connection.flush()
        case .fail(let error):
            connection.finish(error)
        }
    }

    func detach() {
        self.connection = nil
        self.machine.disconnected()
    }

    func handle(_ message: WireMessage, connection: ClientConnection) {
        switch message {
        case .accept(let offset):
            self.accept(offset: offset, connection: connection)
        case .blockAck(let offset):
            self.acknowledged(upTo: offset, connection: connection)
        case .blockNack(let offset, let reason):
            self.rejected(at: offset, reason: reason)
        case .saved(let size, let sha, let name):
            self.saved(size: size, sha: sha, name: name, connection: connection)
        default:
            connection.finish(XferError(.protocolError, "server sent \(message.typeName) during an upload"))
        }
    }

    private func accept(offset: UInt64, connection: ClientConnection) {
        switch self.machine.accepted(offset: offset, now: Monotonic.now()) {
        case .resume(let releasing, let progress):
            // The server has everything before `offset`: resend what it lacks from the retained blocks.
            for block in self.inFlight[..<releasing] {
                self.pool.give(block.frame)
            }
            for block in self.inFlight[releasing...] {
                self.ready[block.offset] = block.remasked()
            }
            self.inFlight.removeAll(keepingCapacity: true)
            self.report(progressAt: progress)
        case .restart(let offset, let generation):
            self.restartReading(at: offset, generation: generation)
            self.report(progressAt: offset)
        case .fail(let error):
            return connection.finish(error)
        case .ignore:
            return
        }
        self.pump()
    }

    /// Drops every held block and re-hashes the bytes before `offset`, so that the final SHA-256 still covers the
    /// whole file; reads then go on from `offset`.
    private func restartReading(at offset: UInt64, generation: Int) {
        self.generation.store(generation, ordering: .sequentiallyConsistent)
        self.ready.removeAll(keepingCapacity: true)
        self.inFlight.removeAll(keepingCapacity: true)
        let source = self.source
        let hashState = self.hashState
        self.readQueue.async {
            hashState.hasher = SHA256()
            var position: UInt64 = 0
            while position < offset {
                let count = Int(min(UInt64(1 << 20), offset - position))
                var chunk = [UInt8](repeating: 0, count: count)
                let got =
                    (try? chunk.withUnsafeMutableBytes { try source.read(at: position, count: count, into: $0) }) ?? 0
                guard got == count else { break }
                chunk.withUnsafeBytes { hashState.hasher.update(bufferPointer: $0) }
                position += UInt64(count)
            }
        }
    }

    private func acknowledged(upTo offset: UInt64, connection: ClientConnection) {
        switch self.machine.acknowledged(upTo: offset, now: Monotonic.now()) {
        case .release(let count, let progress):
            for block in self.inFlight[..<count] {
                self.pool.give(block.frame)
            }
            self.inFlight.removeFirst(count)
            if let progress { self.report(progressAt: progress) }
            self.pump()
        case .fail(let error):
            connection.finish(error)
        case .ignore:
            break
        }
    }

    private func rejected(at offset: UInt64, reason: String) {
        guard case .resend(let index, _, let retry) = self.machine.rejected(at: offset) else { return }
        self.sink.emit(
            .retry(name: self.name, offset: offset, reason: reason, count: retry, client: nil, upload: self.id)
        )
        for block in self.inFlight[index...] {
            self.ready[block.offset] = block.remasked()
        }
        self.inFlight.removeSubrange(index...)
        self.pump()
    }

    private func saved(size: UInt64, sha: [UInt8], name: String, connection: ClientConnection) {
        switch self.machine.saved(size: size, sha256: sha, name: name) {
        case .done(let progress):
            self.report(progressAt: progress)
            self.progressBar?.finish()
            connection.finish(nil)
        case .fail(let error):
            connection.finish(error)
        }
    }

    // MARK: Reading, encoding, sending

    /// Schedules reads up to the window and sends whatever is ready, in order.
    func pump() {
        while case .read(let offset, let expected, let generation) = self.machine.nextRead() {
            self.scheduleRead(at: offset, expected: expected, generation: generation)
        }
        guard let connection = self.connection else { return }
        var wrote = false
        sending: while true {
            switch self.machine.nextSend(canWrite: connection.isWritable) {
            case .send(let offset):
                guard let block = self.ready.removeValue(forKey: offset) else {
                    preconditionFailure("the machine sends block \(offset), which is not ready")
                }
                connection.writeRawFrame(block.frame)
                self.inFlight.append(block)
                wrote = true
            case .computeDigest:
                self.computeDigest()
                break sending
            case .finish(let size, let digest):
                connection.writeControl(.finish(size: size, sha256: digest))
                wrote = true
                break sending
            case .idle:
                break sending
            }
        }
        if wrote { connection.flush() }
    }

    /// Finalizes the SHA-256 behind every block hashed so far, on the read queue (after every read scheduled
    /// before), and hands it to the machine.
    private func computeDigest() {
        let hashState = self.hashState
        self.readQueue.async {
            let digest = Array(hashState.hasher.finalize())
            self.loop.execute {
                guard case .finish(let size, let digest) = self.machine.digestComputed(digest),
                    let connection = self.connection
                else { return }
                connection.writeControl(.finish(size: size, sha256: digest))
                connection.flush()
            }
        }
    }

    private func scheduleRead(at offset: UInt64, expected: Int?, generation: Int) {
        let blockSize = self.settings.blockSize
        let source = self.source
        let hashState = self.hashState
        let pool = self.pool
        let index = Int(offset / UInt64(blockSize))
        let encodeQueue = self.encodeQueues[index % self.encodeQueues.count]
        let compressor = self.compressors[index % self.compressors.count]
        self.readQueue.async {
            guard generation == self.generation.load(ordering: .sequentiallyConsistent) else {
                return self.loop.execute { self.prepared(nil, offset: offset, generation: generation) }
            }
            // The block is read straight into its frame, after room for the WebSocket and block headers: a raw
            // block is then masked in place and sent from the buffer it was read into.
            var frame = pool.take()
            frame.moveWriterIndex(forwardBy: Self.payloadStart)
            let count: Int
            do {
                count = try frame.writeWithUnsafeMutableBytes(minimumWritableBytes: blockSize) {
                    target throws(XferError) in
                    try source.read(at: offset, count: expected ?? blockSize, into: target)
                }
            } catch {
                let error = error as? XferError ?? XferError(.inputUnreadable, "\(error)")
                return self.loop.execute { self.readFailed(error) }
            }
            if let expected, count != expected {
                let error = XferError(
                    .inputUnreadable,
                    "\(source.displayName) changed while uploading: expected \(expected) bytes at offset \(offset), read \(count); run the upload again"
                )
                return self.loop.execute { self.readFailed(error) }
            }
            if count < blockSize && expected == nil {
                // End of a stream: reported straight from the read queue, so it reaches the loop before any
                // later (empty) read does.
                let end = offset + UInt64(count)
                self.loop.execute { self.streamEnded(at: end) }
            }
            guard count > 0 else {
                pool.give(frame)
                return self.loop.execute { self.prepared(nil, offset: offset, generation: generation) }
            }
            let sampler = self.sampler
            let (crc, compressible) = frame.withUnsafeReadableBytes { bytes in
                let raw = UnsafeRawBufferPointer(rebasing: bytes[Self.payloadStart...])
                // Hashed here, in order and while the bytes are in this core's cache: no hand-off to a hash thread.
                hashState.hasher.update(bufferPointer: raw)
                return (BlockCodec.crc32(raw), compressor.level > 0 && sampler.looksCompressible(raw))
            }
            guard compressible else {
                let block = Self.sealFrame(&frame, offset: offset, count: count, crc: crc, encoding: .raw)
                return self.loop.execute { self.prepared(block, offset: offset, generation: generation) }
            }
            // The block counts against the window until it is encoded, so the window bounds the blocks held by
            // the encoder queues.
            let raw = frame
            encodeQueue.async {
                let block = raw.withUnsafeReadableBytes {
                    Self.encode(
                        UnsafeRawBufferPointer(rebasing: $0[Self.payloadStart...]),
                        into: pool.take(),
                        offset: offset,
                        crc: crc,
                        compressor: compressor
                    )
                }
                pool.give(raw)
                self.loop.execute { self.prepared(block, offset: offset, generation: generation) }
            }
        }
    }

    /// Where a block's bytes start in its frame buffer: after the longest WebSocket client header and the block
    /// header.
    static let payloadStart = WebSocketMasking.maxClientHeaderSize + WireMessage.Block.headerSize

    /// Turns a buffer holding a block's payload (`count` raw bytes, or their zlib stream) at `payloadStart` into
    /// the block's whole wire frame, in place: block header, WebSocket header, payload masked. Written to the
    /// socket as is, it never goes through NIO's byte-wise masking.
    private static func sealFrame(
        _ frame: inout ByteBuffer,
        offset: UInt64,
        count: Int,
        crc: UInt32,
        encoding: BlockEncoding
    ) -> PreparedBlock {
        let reserved = WebSocketMasking.maxClientHeaderSize
        let end = frame.writerIndex
        frame.moveWriterIndex(to: reserved)
        let header = WireMessage.Block(
            offset: offset,
            rawLength: UInt32(count),
            crc32: crc,
            encoding: encoding,
            payload: ByteBuffer()
        )
        WireMessage.writeBlockHeader(header, into: &frame)
        frame.moveWriterIndex(to: end)
        let key = (0..<4).map { _ in UInt8.random(in: 0...255) }
        frame.withUnsafeMutableReadableBytes {
            WebSocketMasking.apply(UnsafeMutableRawBufferPointer(rebasing: $0[reserved...]), key: key)
        }
        let start = WebSocketMasking.writeClientBinaryHeader(
            length: end - reserved,
            key: key,
            into: &frame,
            reserved: reserved
        )
        frame.moveReaderIndex(to: start)
        return PreparedBlock(
            offset: offset,
            rawLength: count,
            frame: frame,
            maskKey: key,
            payloadStart: reserved - start
        )
    }

    /// Builds the whole wire frame of a block that looked compressible into `out`, on an encoder queue: the zlib
    /// stream, or the raw bytes when deflate did not shrink them.
    private static func encode(
        _ raw: UnsafeRawBufferPointer,
        into out: consuming ByteBuffer,
        offset: UInt64,
        crc: UInt32,
        compressor: BlockCompressor
    ) -> PreparedBlock {
        var out = out
        out.moveWriterIndex(forwardBy: Self.payloadStart)
        let encoding = compressor.encode(raw, into: &out)
        return Self.sealFrame(&out, offset: offset, count: raw.count, crc: crc, encoding: encoding)
    }

    private func streamEnded(at end: UInt64) {
        if case .totalKnown(let total) = self.machine.streamEnded(at: end) {
            self.progressBar?.total = total
        }
    }

    private func prepared(_ block: PreparedBlock?, offset: UInt64, generation: Int) {
        let action = self.machine.blockPrepared(offset: offset, length: block?.rawLength ?? 0, generation: generation)
        if let block {
            switch action {
            case .store: self.ready[offset] = block
            case .discard: self.pool.give(block.frame)
            }
        }
        self.pump()
    }

    private func readFailed(_ error: XferError) {
        if case .fail(let error) = self.machine.readFailed(error) {
            self.connection?.finish(error)
        }
    }

    private func report(progressAt bytes: UInt64) {
        self.sink.emit(
            .progress(
                name: self.name,
                bytes: bytes,
                total: self.machine.total ?? self.source.size,
                client: nil,
                upload: self.id
            )
        )
        self.progressBar?.update(bytes: bytes)
    }
}
