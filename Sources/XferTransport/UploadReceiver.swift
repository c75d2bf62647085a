import Crypto
import Dispatch
import NIOCore
import NIOWebSocket
import Synchronization
import XferEvents
import XferProtocol

/// Uploads in progress on this server, by upload id: a newer connection for the same id takes over.
///
/// After a cut the server may not yet know that the old connection is dead (it learns at the ping timeout); the
/// client that reconnects must not have to wait for that, so the old connection is closed and the new one
/// proceeds once the old one has released the files.
final class ActiveUploads: Sendable {
    struct Holder {
        var token: Int
        var abort: @Sendable () -> Void
        var released: EventLoopFuture<Void>
    }

    private let holders = Mutex<(next: Int, byID: [String: Holder])>((1, [:]))

    /// Claims `id`; returns a token for `release` and a future that completes once any previous holder let go.
    func claim(
        _ id: String,
        abort: @escaping @Sendable () -> Void,
        released: EventLoopFuture<Void>,
        on loop: EventLoop
    ) -> (token: Int, previous: EventLoopFuture<Void>) {
        let (token, previous) = self.holders.withLock { state -> (Int, Holder?) in
            let token = state.next
            state.next += 1
            let previous = state.byID[id]
            state.byID[id] = Holder(token: token, abort: abort, released: released)
            return (token, previous)
        }
        guard let previous else { return (token, loop.makeSucceededVoidFuture()) }
        previous.abort()
        return (token, previous.released.hop(to: loop))
    }

    /// Releases `id` if `token` still holds it.
    func release(_ id: String, token: Int) {
        self.holders.withLock { state in
            if state.byID[id]?.token == token { state.byID[id] = nil }
        }
    }
}

/// The server side of one upload connection: offer, blocks, finish. Lives on the channel's event loop; file I/O,
/// checksums, decompression and hashing run on a serial queue of its own, so the event loop keeps reading
/// (and answering pings) while the disk works.
///
/// `@unchecked Sendable`: its mutable state is touched only on `loop` (closures hop back with `loop.execute`),
/// and `work` only on `io`.
final class UploadReceiver: @unchecked Sendable {
    /// Most blocks queued for the I/O queue before the socket stops being read (back-pressure, not buffering).
    static let maxQueuedBlocks = 8
    /// Most times one block may fail verification before the upload is refused.
    static let maxRetriesPerBlock = 3
    /// Largest block accepted, in raw bytes.
    static let maxBlockSize = 16 << 20

    private let server: ServerContext
    private let clientID: Int
    private let loop: EventLoop
    private let io = DispatchQueue(label: "xfer.upload.io")
    /// SHA-256 of the written blocks, in order, beside the I/O queue: hashing then costs the writer no time.
    private let hashing = DispatchQueue(label: "xfer.upload.hash")
    /// Blocks written but not yet hashed, at most `maxQueuedBlocks`: when hashing falls behind, the I/O queue
    /// waits, its queue fills, and the socket stops being read. Memory stays bounded whichever stage is slowest.
    private let hashSlots = DispatchSemaphore(value: UploadReceiver.maxQueuedBlocks)
    private let send: (WireMessage) -> Void
    private let fail: (XferError.Code, String) -> Void
    private let closeChannel: @Sendable () -> Void
    private let emit: (Event) -> Void
    private let setReading: (Bool) -> Void

    private enum State {
        case awaitingOffer
        case opening(UploadOffer)
        case receiving(UploadOffer, expected: UInt64)
        case finishing(UploadOffer)
        case done
    }

    private var state: State = .awaitingOffer
    private var claimToken: Int?
    private var claimedID: String?
    private var releasePromise: EventLoopPromise<Void>
    /// Touched only on `io`.
    private let work: IOState
    private var queued = 0
    private var paused = false
    private var retryAt: UInt64?
    private var retries: [UInt64: Int] = [:]
    private var totalRetries = 0
    private var resumedFrom: UInt64 = 0
    private var lastProgress: UInt64 = 0
    private var lastProgressBytes: UInt64 = 0

    /// State owned by the I/O queue.
    final class IOState: @unchecked Sendable {
        var upload: PartialUpload?
        /// Set on the I/O queue when the upload opens, before any block; then updated only on the hash queue.
        var hasher = SHA256()
        let codec = BlockCodec(level: 0)
        var scratch = ByteBufferAllocator().buffer(capacity: 0)
        /// The last 32 KiB written: the preset dictionary of the next block.
        var tail: [UInt8] = []
        var failedAt: UInt64?
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
        self.server = server
        self.clientID = clientID
        self.loop = loop
        self.send = send
        self.fail = fail
        self.closeChannel = closeChannel
        self.emit = emit
        self.setReading = setReading
        self.releasePromise = loop.makePromise(of: Void.self)
        self.work = IOState()
    }

    /// A control message for the upload arrived. `frameBuffer` is the buffer a block's payload lives in; it goes
    /// back to the server's pool once the block is written and hashed.
    func received(_ message: WireMessage, frameBuffer: ByteBuffer? = nil) {
        switch (message, self.state) {
        case (.offer(let fields), .awaitingOffer):
            self.offerReceived(fields)
        case (.block(let block), .receiving(let offer, let expected)):
            self.blockReceived(block, offer: offer, expected: expected, frameBuffer: frameBuffer)
        case (.block, .opening), (.block, .finishing), (.block, .done):
            // Blocks sent before our accept or after a nack can still be in flight: dropped, the client resends.
            break
        case (.finish(let size, let sha), .receiving(let offer, let expected)):
            guard self.retryAt == nil else {
                return self.fail(.protocolError, "finish arrived while block \(self.retryAt!) was still being resent")
            }
            guard expected == size else {
                return self.fail(.integrityFailed, "finish says \(size) bytes but \(expected) were sent")
            }
            self.state = .finishing(offer)
            self.finishReceived(offer: offer, size: size, sha: sha)
        default:
            self.fail(.protocolError, "unexpected \(message.typeName) message during an upload")
        }
    }

    private func offerReceived(_ fields: [String: String]) {
        guard let id = fields["upload"], id.utf8.count >= 16, id.utf8.count <= 64,
            id.utf8.allSatisfy({
                (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0)
                    || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0)
            })
        else {
            return self.fail(.protocolError, "offer needs an upload id of 16-64 lowercase hex digits")
        }
        let name: String
        do {
            name = try SafeFileName.sanitize(fields["name"] ?? "")
        } catch {
            return self.fail(error.code, error.message)
        }
        guard let blockSize = fields["block_size"].flatMap(Int.init), blockSize >= 4096, blockSize <= Self.maxBlockSize
        else {
            return self.fail(.protocolError, "offer needs block_size between 4096 and \(Self.maxBlockSize)")
        }
        let size = fields["size"].flatMap(UInt64.init)
        if let size, size > self.server.configuration.maxFileSize {
            return self.fail(
                .fileTooLarge,
                "\(name) is \(size) bytes, over the server's limit of \(self.server.configuration.maxFileSize) (--max-file-size)"
            )
        }
        let offer = UploadOffer(
            id: id,
            name: name,
            size: size,
            blockSize: blockSize,
            mtime: fields["mtime"] ?? "",
            kind: fields["kind"] == "stream" ? "stream" : "file"
        )
        self.state = .opening(offer)
        let closeChannel = self.closeChannel
        let claim = self.server.uploads.claim(
            id,
            abort: closeChannel,
            released: self.releasePromise.futureResult,
            on: self.loop
        )
        self.claimToken = claim.token
        self.claimedID = id
        let store = self.server.store
        let work = self.work
        claim.previous.whenComplete { _ in
            self.io.async {
                let result: Result<UInt64, XferError>
                do {
                    work.hasher = SHA256()
                    let upload = try store.open(offer, hasher: &work.hasher)
                    work.upload = upload
                    work.tail = upload.tail(32 * 1024)
                    result = .success(upload.verifiedOffset)
                } catch {
                    result = .failure(error as? XferError ?? XferError(.internalError, "\(error)"))
                }
                self.loop.execute { self.opened(offer, result) }
            }
        }
    }

    private func opened(_ offer: UploadOffer, _ result: Result<UInt64, XferError>) {
        guard case .opening = self.state else { return }
        switch result {
        case .success(let offset):
            self.resumedFrom = offset
            self.state = .receiving(offer, expected: offset)
            self.send(.accept(offset: offset))
            self.progress(offer: offer, bytes: offset, force: true)
        case .failure(let error):
            self.fail(error.code, error.message)
        }
    }

    private func blockReceived(
        _ block: WireMessage.Block,
        offer: UploadOffer,
        expected: UInt64,
        frameBuffer: ByteBuffer?
    ) {
        if let retryAt = self.retryAt {
            // After a nack, blocks already in flight are dropped until the failed one comes again.
            guard block.offset == retryAt else { return }
            self.retryAt = nil
        }
        guard block.offset == expected else {
            return self.fail(.protocolError, "block at offset \(block.offset) arrived, \(expected) was expected")
        }
        guard block.rawLength > 0, Int(block.rawLength) <= offer.blockSize else {
            return self.fail(
                .protocolError,
                "block at \(block.offset) declares \(block.rawLength) bytes; blocks are at most \(offer.blockSize)"
            )
        }
        let end = expected + UInt64(block.rawLength)
        if let size = offer.size, end > size {
            return self.fail(.protocolError, "block at \(block.offset) goes past the declared size of \(size) bytes")
        }
        if end > self.server.configuration.maxFileSize {
            return self.fail(
                .fileTooLarge,
                "\(offer.name) grew past the server's limit of \(self.server.configuration.maxFileSize) bytes (--max-file-size)"
            )
        }
        self.state = .receiving(offer, expected: end)
        self.queued += 1
        if self.queued >= Self.maxQueuedBlocks && !self.paused {
            self.paused = true
            self.setReading(false)
        }
        let work = self.work
        let hashing = self.hashing
        let hashSlots = self.hashSlots
        let pool = self.server.blockBuffers
        let offset = block.offset
        self.io.async {
            let outcome = Self.verifyAndWrite(block, work: work, hashing: hashing, hashSlots: hashSlots) {
                if let frameBuffer { pool.give(frameBuffer) }
            }
            self.loop.execute { self.blockProcessed(at: offset, offer: offer, outcome: outcome) }
        }
    }

    private enum BlockOutcome {
        case written(UInt64)
        case corrupt(String)
        case dropped
        case failed(XferError)
    }

    /// On the I/O queue: checks and writes one block in order, then hands it to `hashing` for the SHA-256.
    private static func verifyAndWrite(
        _ block: WireMessage.Block,
        work: IOState,
        hashing: DispatchQueue,
        hashSlots: DispatchSemaphore,
        recycle: @escaping @Sendable () -> Void
    ) -> BlockOutcome {
        var recycleNow = true
        defer { if recycleNow { recycle() } }
        guard let upload = work.upload else { return .dropped }
        guard block.offset == upload.verifiedOffset else {
            // Queued behind a block that failed: the client resends from the failed one.
            return .dropped
        }
        // Raw blocks are checked and written straight from the frame: no copy.
        var raw = block.payload
        if block.encoding == .zlib {
            work.scratch.clear()
            do {
                try block.payload.withUnsafeReadableBytes { payload throws(XferError) in
                    try work.codec.decode(
                        payload,
                        encoding: block.encoding,
                        rawLength: Int(block.rawLength),
                        into: &work.scratch,
                        dictionary: work.tail
                    )
                }
            } catch {
                return .corrupt(error.message)
            }
            raw = work.scratch
        } else if raw.readableBytes != Int(block.rawLength) {
            return .corrupt("raw block holds \(raw.readableBytes) bytes but declares \(block.rawLength)")
        }
        let crc = raw.withUnsafeReadableBytes { BlockCodec.crc32($0) }
        guard crc == block.crc32 else {
            return .corrupt(
                "checksum mismatch: block CRC-32 is \(String(crc, radix: 16)), expected \(String(block.crc32, radix: 16))"
            )
        }
        do {
            try raw.withUnsafeReadableBytes { raw throws(XferError) in try upload.append(raw) }
        } catch {
            return .failed(error)
        }
        // `raw` shares its storage with the closure: reusing `work.scratch` for the next block copies on write.
        let written = raw
        recycleNow = false
        hashSlots.wait()
        hashing.async {
            written.withUnsafeReadableBytes { work.hasher.update(bufferPointer: $0) }
            recycle()
            hashSlots.signal()
        }
        let keep = 32 * 1024
        if raw.readableBytes >= keep {
            work.tail = raw.getBytes(at: raw.readerIndex + raw.readableBytes - keep, length: keep) ?? []
        } else {
            work.tail = Array((work.tail + raw.readableBytesView).suffix(keep))
        }
        if work.scratch.capacity > 2 * Int(block.rawLength) + 65536 {
            work.scratch = ByteBufferAllocator().buffer(capacity: 0)
        }
        return .written(upload.verifiedOffset)
    }

    private func blockProcessed(at offset: UInt64, offer: UploadOffer, outcome: BlockOutcome) {
        self.queued -= 1
        if self.paused && self.queued <= Self.maxQueuedBlocks / 2 {
            self.paused = false
            self.setReading(true)
        }
        guard case .receiving = self.state else { return }
        switch outcome {
        case .written(let offset):
            self.send(.blockAck(offset: offset))
            self.progress(offer: offer, bytes: offset, force: false)
        case .dropped:
            break
        case .corrupt(let reason):
            let count = (self.retries[offset] ?? 0) + 1
            self.retries[offset] = count
            self.totalRetries += 1
            self.emit(
                .retry(
                    name: offer.name,
                    offset: offset,
                    reason: reason,
                    count: self.totalRetries,
                    client: self.clientID,
                    upload: offer.id
                )
            )
            guard count <= Self.maxRetriesPerBlock else {
                return self.fail(
                    .checksumFailed,
                    "block at offset \(offset) of \(offer.name) failed verification \(count) times (\(reason)); the source may be changing or the network corrupts data"
                )
            }
            self.retryAt = offset
            self.state = .receiving(offer, expected: offset)
            self.send(.blockNack(offset: offset, reason: reason))
        case .failed(let error):
            self.fail(error.code, error.message)
        }
    }

    private func finishReceived(offer: UploadOffer, size: UInt64, sha: [UInt8]) {
        let work = self.work
        let hashing = self.hashing
        self.io.async {
            let result: Result<(String, String, String), XferError>
            if let upload = work.upload {
                // Every written block was queued for hashing before this point: wait for the last one.
                let digest = hashing.sync { Array(work.hasher.finalize()) }
                if digest != sha || upload.verifiedOffset != size {
                    upload.discard()
                    work.upload = nil
                    result = .failure(
                        XferError(
                            .integrityFailed,
                            "\(offer.name): SHA-256 of the \(upload.verifiedOffset) bytes received is \(Hex.encode(digest)), the client computed \(Hex.encode(sha)); the partial upload was discarded (did the source change?)"
                        )
                    )
                } else {
                    do {
                        let (name, path) = try upload.commit()
                        work.upload = nil
                        result = .success((name, path, Hex.encode(digest)))
                    } catch {
                        result = .failure(error as? XferError ?? XferError(.internalError, "\(error)"))
                    }
                }
            } else {
                result = .failure(XferError(.internalError, "no open upload at finish"))
            }
            self.loop.execute {
                switch result {
                case .success(let (name, path, hex)):
                    self.state = .done
                    self.progress(offer: offer, bytes: size, force: true)
                    self.emit(
                        .fileSaved(
                            client: self.clientID,
                            name: name,
                            path: path,
                            bytes: size,
                            sha256: hex,
                            upload: offer.id,
                            resumedFrom: self.resumedFrom
                        )
                    )
                    self.send(.saved(size: size, sha256: sha, name: name))
                case .failure(let error):
                    self.fail(error.code, error.message)
                }
            }
        }
    }

    /// At most four progress events a second per upload (SPEC.md allows ten).
    private func progress(offer: UploadOffer, bytes: UInt64, force: Bool) {
        let now = Monotonic.now()
        guard force || now - self.lastProgress >= 250_000_000 else { return }
        if !force && bytes == self.lastProgressBytes { return }
        self.lastProgress = now
        self.lastProgressBytes = bytes
        self.emit(.progress(name: offer.name, bytes: bytes, total: offer.size, client: self.clientID, upload: offer.id))
    }

    /// The connection ended: close the files (keeping the partial data) and let a newer connection take over.
    func connectionClosed() {
        let work = self.work
        let promise = self.releasePromise
        self.io.async {
            work.upload?.close()
            work.upload = nil
            promise.succeed(())
        }
        if let token = self.claimToken, let id = self.claimedID {
            self.server.uploads.release(id, token: token)
        }
        self.state = .done
    }
}

/// Lowercase hexadecimal.
enum Hex {
    static func encode(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
