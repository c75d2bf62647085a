import Crypto
import Dispatch
import NIOCore
import XferEvents
import XferProtocol
import XferTransport

/// The server side of one upload connection: the driver of `UploadReceiverStateMachine`.
///
/// It lives on the channel's event loop, feeds every upload message and every result into the machine, and does
/// what the machine answers. File I/O, checksums and decompression run on a serial queue of its own, hashing on
/// another, so the event loop keeps reading (and answering pings) while the disk works.
///
/// `@unchecked Sendable`: its mutable state is touched only on `loop` (closures hop back with `loop.execute`),
/// and `work` only on `io` (the hasher also on `hashing`, in turn).
final class UploadReceiver: @unchecked Sendable {
    /// Largest block accepted, in raw bytes.
    static let maxBlockSize = UploadReceiverStateMachine.Limits.defaultMaxBlockSize
    /// Bytes of verified data that form the next block's compression dictionary.
    static let dictionarySize = 32 * 1024

    private let server: ServerContext
    private let clientID: Int
    private let loop: EventLoop
    private let io = DispatchQueue(label: "xfer.upload.io")
    /// SHA-256 of the written blocks, in order, beside the I/O queue: hashing then costs the writer no time.
    private let hashing = DispatchQueue(label: "xfer.upload.hash")
    /// Blocks written but not yet hashed, at most `maxQueuedBlocks`: when hashing falls behind, the I/O queue
    /// waits, its queue fills, and the socket stops being read. Memory stays bounded whichever stage is slowest.
    private let hashSlots: DispatchSemaphore
    private let send: (WireMessage) -> Void
    private let fail: (XferError.Code, String) -> Void
    private let closeChannel: @Sendable () -> Void
    private let emit: (Event) -> Void
    private let setReading: (Bool) -> Void

    private var machine: UploadReceiverStateMachine
    /// The claim on the upload id, once the offer was valid.
    private var claim: UploadClaim?
    /// Block payload bytes received on this connection, compressed or not (for `progress.wire_bytes`).
    private var wireBytes: UInt64 = 0
    /// Touched only on `io`.
    private let work: IOState

    /// State owned by the I/O queue.
    final class IOState: @unchecked Sendable {
        var upload: PartialUpload?
        /// Set on the I/O queue when the upload opens, before any block; then updated only on the hash queue.
        var hasher = SHA256()
        let codec = BlockCodec(level: 0)
        /// The last 32 KiB written: the preset dictionary of the next block.
        var tail: [UInt8] = []
    }

    init(
        server: ServerContext,
        clientID: Int,
        loop: EventLoop,
        send: @escaping (WireMessage) -> Void,
        fail: @escaping (XferError.Code, String) -> Void,
        closeChannel: @escaping @Sendable () -> Void,
        emit: @escaping (Event) -> Void,
        setReading: @escaping (Bool) -> Void
    ) {
        let limits = UploadReceiverStateMachine.Limits(
            maxBlockSize: Self.maxBlockSize,
            maxFileSize: server.configuration.maxFileSize
        )
        self.server = server
        self.clientID = clientID
        self.loop = loop
        self.send = send
        self.fail = fail
        self.closeChannel = closeChannel
        self.emit = emit
        self.setReading = setReading
        self.machine = UploadReceiverStateMachine(limits: limits)
        self.hashSlots = DispatchSemaphore(value: limits.maxQueuedBlocks)
        self.work = IOState()
    }

    /// A control message for the upload arrived. `frameBuffer` is the buffer a block's payload lives in; it goes
    /// back to the server's pool once the block is written and hashed.
    func received(_ message: WireMessage, frameBuffer: ByteBuffer? = nil) {
        switch message {
        case .offer(let fields):
            self.perform(self.machine.offerReceived(fields))
        case .block(let block):
            self.blockReceived(block, frameBuffer: frameBuffer)
        case .finish(let size, let sha):
            switch self.machine.finishReceived(size: size, sha256: sha) {
            case .computeDigest:
                self.computeDigest()
            case .fail(let code, let message):
                self.fail(code, message)
            }
        default:
            switch self.machine.unexpectedMessage(message.typeName) {
            case .fail(let code, let message):
                self.fail(code, message)
            }
        }
    }

    // MARK: Offer, claim, open

    private func perform(_ action: UploadReceiverStateMachine.OfferAction) {
        switch action {
        case .claim(let offer):
            let loop = self.loop
            // Ready may be called at once, before `claim` returns: the hop keeps `self.claim` set by then.
            self.claim = self.server.store.claim(
                offer.id,
                requestRelease: self.closeChannel,
                whenReady: { loop.execute { self.claimReady() } }
            )
        case .fail(let code, let message):
            self.fail(code, message)
        }
    }

    private func claimReady() {
        self.perform(self.machine.claimed())
    }

    /// The wait after a busy open is over.
    private func openRetryDue() {
        self.perform(self.machine.openRetryDue())
    }

    private func perform(_ action: UploadReceiverStateMachine.ClaimAction) {
        guard case .open(let offer) = action, let claim = self.claim else { return }
        let store = self.server.store
        let work = self.work
        self.io.async {
            let result: Result<UInt64, XferError>
            do throws(XferError) {
                let upload = try store.open(offer, claim: claim)
                work.upload = upload
                try Self.readBack(upload, into: work)
                result = .success(upload.verifiedOffset)
            } catch {
                result = .failure(error)
            }
            self.loop.execute { self.opened(result) }
        }
    }

    /// On the I/O queue: re-hashes the verified prefix of a resumed upload, so that the final SHA-256 covers the
    /// whole file, and reads its last 32 KiB, the next block's compression dictionary. When the stored data ends
    /// early, the store cuts the upload back to what it could read (`read` returns 0 there), and the client resumes
    /// from that shorter offset.
    private static func readBack(_ upload: PartialUpload, into work: IOState) throws(XferError) {
        work.hasher = SHA256()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        var position: UInt64 = 0
        while position < upload.verifiedOffset {
            let got = try upload.read(at: position, into: buffer)
            guard got > 0 else { break }
            work.hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<got]))
            position += UInt64(got)
        }
        let end = upload.verifiedOffset
        let count = Int(min(UInt64(Self.dictionarySize), end))
        let tail = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count])
        let got = try upload.read(at: end - UInt64(count), into: tail)
        work.tail = got == count ? Array(tail) : []
    }

    private func opened(_ result: Result<UInt64, XferError>) {
        let action: UploadReceiverStateMachine.OpenAction
        switch result {
        case .success(let offset):
            action = self.machine.opened(offset: offset, now: Monotonic.now())
        case .failure(let error) where error.code == .busy:
            action = self.machine.openBusy(error.message, now: Monotonic.now())
        case .failure(let error):
            action = self.machine.openFailed(error.code, error.message)
        }
        switch action {
        case .accept(let offset, let progress):
            self.send(.accept(offset: offset))
            self.report(progress)
        case .retry(let after):
            // A timer on the loop, not a sleep on the I/O queue: waiting for another server holds no thread.
            self.loop.scheduleTask(in: .nanoseconds(Int64(after))) { self.openRetryDue() }
        case .fail(let code, let message):
            self.fail(code, message)
        case .none:
            break
        }
    }

    // MARK: Blocks

    private func blockReceived(_ block: WireMessage.Block, frameBuffer: ByteBuffer?) {
        self.wireBytes += UInt64(block.payload.readableBytes)
        switch self.machine.blockReceived(offset: block.offset, rawLength: block.rawLength) {
        case .write(let pauseReading):
            if pauseReading { self.setReading(false) }
        case .drop:
            return
        case .fail(let code, let message):
            return self.fail(code, message)
        }
        let work = self.work
        let hashing = self.hashing
        let hashSlots = self.hashSlots
        let pool = self.server.blockBuffers
        let loop = self.loop
        // The block travels in a box whose contents the I/O queue takes out: no closure keeps a reference to its
        // buffer, which therefore returns to the pool unshared (see `BlockBuffers`).
        let buffers = BlockBuffers(block: block, frameBuffer: frameBuffer)
        let offset = block.offset
        self.io.async {
            let outcome = Self.verifyAndWrite(buffers, work: work, pool: pool)
            // Every reference `verifyAndWrite` took is gone: only `buffers` holds the block's memory now.
            if buffers.toHash != nil {
                hashSlots.wait()
                hashing.async {
                    if let written = buffers.toHash.take() {
                        written.withUnsafeReadableBytes { work.hasher.update(bufferPointer: $0) }
                    }
                    // On the loop: the read that delivered this block has surely returned by then, so nothing but
                    // `buffers` references the memory.
                    loop.execute { buffers.giveBack(to: pool) }
                    hashSlots.signal()
                }
            } else {
                loop.execute { buffers.giveBack(to: pool) }
            }
            self.loop.execute { self.blockProcessed(at: offset, outcome: outcome) }
        }
    }

    /// The memory of one block on its way through the I/O and hash queues, back to the pool once neither uses it.
    ///
    /// A buffer given back while a payload slice, a closure capture or a local still references it cannot be
    /// reused: `BufferPool` then replaces it with fresh memory, and every new page costs a fault. So the stages
    /// take what they need out of this box, and the buffers go back from the event loop after the last stage.
    final class BlockBuffers: @unchecked Sendable {
        /// The block, until the I/O queue takes it.
        var block: WireMessage.Block?
        /// The buffers the block's memory lives in (the frame's, and the inflated bytes of a compressed block).
        var owned: [ByteBuffer]
        /// The written bytes, when they are to be hashed: taken by the hash queue.
        var toHash: ByteBuffer?

        init(block: WireMessage.Block, frameBuffer: ByteBuffer?) {
            self.block = block
            self.owned = frameBuffer.map { [$0] } ?? []
        }

        /// Returns every buffer to `pool`; call it when nothing else references them.
        func giveBack(to pool: BufferPool) {
            self.block = nil
            self.toHash = nil
            while !self.owned.isEmpty { pool.give(self.owned.removeLast()) }
        }
    }

    /// On the I/O queue: checks and writes one block in order; the written bytes are left in `buffers.toHash`.
    ///
    /// A raw block is checked, written and hashed straight from the frame's buffer; a compressed one is inflated
    /// from it into another buffer of `pool`, kept in `buffers` as well. The buffers go back to the pool once the
    /// hash is done with them: no block takes fresh memory (each new page costs a fault).
    private static func verifyAndWrite(
        _ buffers: BlockBuffers,
        work: IOState,
        pool: BufferPool
    ) -> UploadReceiverStateMachine.BlockOutcome {
        guard let block = buffers.block.take() else { return .dropped }
        guard let upload = work.upload else { return .dropped }
        guard block.offset == upload.verifiedOffset else {
            // Queued behind a block that failed: the client resends from the failed one.
            return .dropped
        }
        // Raw blocks are checked and written straight from the frame: no copy.
        var raw = block.payload
        if block.encoding == .zlib {
            var inflated = Int(block.rawLength) < pool.capacity ? pool.take() : ByteBuffer()
            do {
                try block.payload.withUnsafeReadableBytes { payload throws(XferError) in
                    try work.codec.decode(
                        payload,
                        encoding: block.encoding,
                        rawLength: Int(block.rawLength),
                        into: &inflated,
                        dictionary: work.tail
                    )
                }
            } catch {
                buffers.owned.append(inflated)
                return .corrupt(reason: error.message)
            }
            raw = inflated
            buffers.owned.append(inflated)
        } else if raw.readableBytes != Int(block.rawLength) {
            return .corrupt(reason: "raw block holds \(raw.readableBytes) bytes but declares \(block.rawLength)")
        }
        let crc = raw.withUnsafeReadableBytes { BlockCodec.crc32($0) }
        guard crc == block.crc32 else {
            return .corrupt(
                reason:
                    "checksum mismatch: block CRC-32 is \(String(crc, radix: 16)), expected \(String(block.crc32, radix: 16))"
            )
        }
        do {
            try raw.withUnsafeReadableBytes { raw throws(XferError) in try upload.append(raw) }
        } catch {
            return .failed(error.code, error.message)
        }
        let keep = Self.dictionarySize
        if raw.readableBytes >= keep {
            work.tail = raw.getBytes(at: raw.readerIndex + raw.readableBytes - keep, length: keep) ?? []
        } else {
            work.tail = Array((work.tail + raw.readableBytesView).suffix(keep))
        }
        buffers.toHash = raw
        return .written(verifiedOffset: upload.verifiedOffset)
    }

    private func blockProcessed(at offset: UInt64, outcome: UploadReceiverStateMachine.BlockOutcome) {
        if case .resumeReading = self.machine.blockDequeued() {
            self.setReading(true)
        }
        switch self.machine.blockProcessed(at: offset, outcome: outcome, now: Monotonic.now()) {
        case .ack(let offset, let progress):
            self.send(.blockAck(offset: offset))
            if let progress { self.report(progress) }
        case .nack(let retry):
            self.report(retry)
            self.send(.blockNack(offset: retry.offset, reason: retry.reason))
        case .giveUp(let retry, let code, let message):
            self.report(retry)
            self.fail(code, message)
        case .fail(let code, let message):
            self.fail(code, message)
        case .none:
            break
        }
    }

    // MARK: Finish

    private func computeDigest() {
        let work = self.work
        let hashing = self.hashing
        self.io.async {
            // Every written block was queued for hashing before this point: wait for the last one.
            let digest = hashing.sync { Array(work.hasher.finalize()) }
            let bytes = work.upload?.verifiedOffset ?? 0
            self.loop.execute { self.verified(digest: digest, bytes: bytes) }
        }
    }

    private func verified(digest: [UInt8], bytes: UInt64) {
        let work = self.work
        switch self.machine.verified(digest: digest, verifiedBytes: bytes) {
        case .commit:
            self.io.async {
                let result: Result<(name: String, path: String), XferError>
                do throws(XferError) {
                    guard let upload = work.upload else {
                        throw XferError(.internalError, "no open upload at finish")
                    }
                    result = .success(try upload.commit())
                    work.upload = nil
                } catch {
                    result = .failure(error)
                }
                self.loop.execute { self.committed(result) }
            }
        case .discardAndFail(let code, let message):
            self.io.async {
                work.upload?.discard()
                work.upload = nil
            }
            self.fail(code, message)
        case .none:
            break
        }
    }

    private func committed(_ result: Result<(name: String, path: String), XferError>) {
        let action: UploadReceiverStateMachine.CommitAction
        switch result {
        case .success(let saved):
            action = self.machine.committed(name: saved.name, path: saved.path)
        case .failure(let error):
            action = self.machine.commitFailed(error.code, error.message)
        }
        switch action {
        case .saved(let saved, let progress):
            self.report(progress)
            self.emit(self.fileSavedEvent(saved))
            self.send(.saved(size: saved.bytes, sha256: saved.sha256, name: saved.name))
        case .savedDetached(let saved, let progress):
            // The connection's handler (and its emitter) may be gone: straight to the server's sink.
            self.server.sink.emit([self.progressEvent(progress), self.fileSavedEvent(saved)])
        case .fail(let code, let message):
            self.fail(code, message)
        case .none:
            break
        }
    }

    // MARK: Events

    private func report(_ progress: UploadReceiverStateMachine.Progress) {
        self.emit(self.progressEvent(progress))
    }

    private func progressEvent(_ progress: UploadReceiverStateMachine.Progress) -> Event {
        .progress(
            name: progress.name,
            bytes: progress.bytes,
            total: progress.total,
            client: self.clientID,
            upload: progress.upload,
            wireBytes: self.wireBytes
        )
    }

    private func fileSavedEvent(_ saved: UploadReceiverStateMachine.Saved) -> Event {
        .fileSaved(
            client: self.clientID,
            name: saved.name,
            path: saved.path,
            bytes: saved.bytes,
            sha256: Hex.encode(saved.sha256),
            upload: saved.upload,
            resumedFrom: saved.resumedFrom
        )
    }

    private func report(_ retry: UploadReceiverStateMachine.Retry) {
        self.emit(
            .retry(
                name: retry.name,
                offset: retry.offset,
                reason: retry.reason,
                count: retry.count,
                client: self.clientID,
                upload: retry.upload
            )
        )
    }

    /// The connection ended: close the files (keeping the partial data) and let a newer connection take over.
    func connectionClosed() {
        guard case .release = self.machine.connectionClosed(), let claim = self.claim else { return }
        let work = self.work
        let store = self.server.store
        self.io.async {
            work.upload?.close()
            work.upload = nil
            store.release(claim)
        }
    }
}
