/// The server's decisions for one upload connection, as a value: offer, claim, resume offset, blocks, finish,
/// commit or discard.
///
/// The driver (XferTransport's `UploadReceiver`) owns the queues, the file store, the CRC, inflate and SHA-256
/// work and the buffers; it feeds every input into this machine and performs exactly the action it gets back.
/// Time is passed in (`now:`, monotonic nanoseconds). Blocks are checked here by their header only (offset and
/// declared length), so that the per-block cost is a few comparisons and no copy.
public struct UploadReceiverStateMachine: Sendable {
    /// Limits the machine enforces; the defaults are the server's.
    public struct Limits: Sendable, Equatable {
        /// The default `maxBlockSize`: 16 MiB, sixteen times the client's default block size.
        public static let defaultMaxBlockSize = 16 << 20

        /// Largest block accepted, in raw bytes.
        public var maxBlockSize: Int
        /// Largest upload accepted, in bytes (`--max-file-size`).
        public var maxFileSize: UInt64
        /// Most times one block may fail verification before the upload is refused (3: a flipped bit on the path
        /// is retried, a source that keeps changing under the reader is not retried forever).
        public var maxRetriesPerBlock: Int
        /// Blocks handed to the driver but not yet processed before the socket stops being read (8: enough to keep
        /// the disk busy, little enough to bound memory to a few blocks). Reading resumes at half of it.
        public var maxQueuedBlocks: Int
        /// Least time between two progress reports, in nanoseconds (250 ms: four a second, SPEC.md allows ten).
        public var progressInterval: UInt64
        /// How long an upload that another server process writes is tried again before the offer is refused with
        /// `busy`, in nanoseconds (2 s: about what a client waits for an answer anyway).
        public var busyWait: UInt64
        /// Time between two tries to open a busy upload, in nanoseconds (25 ms).
        public var busyRetryInterval: UInt64

        /// Limits with the server's defaults for all but the file size.
        public init(
            maxBlockSize: Int = Limits.defaultMaxBlockSize,
            maxFileSize: UInt64,
            maxRetriesPerBlock: Int = 3,
            maxQueuedBlocks: Int = 8,
            progressInterval: UInt64 = 250_000_000,
            busyWait: UInt64 = 2_000_000_000,
            busyRetryInterval: UInt64 = 25_000_000
        ) {
            self.maxBlockSize = maxBlockSize
            self.maxFileSize = maxFileSize
            self.maxRetriesPerBlock = maxRetriesPerBlock
            self.maxQueuedBlocks = maxQueuedBlocks
            self.progressInterval = progressInterval
            self.busyWait = busyWait
            self.busyRetryInterval = busyRetryInterval
        }
    }

    /// How far an upload got, for a `progress` event.
    public struct Progress: Sendable, Equatable {
        /// The upload's id.
        public var upload: String
        /// The safe file name.
        public var name: String
        /// Bytes verified so far.
        public var bytes: UInt64
        /// The declared size, nil for a stream of unknown length.
        public var total: UInt64?

        /// A progress report.
        public init(upload: String, name: String, bytes: UInt64, total: UInt64?) {
            self.upload = upload
            self.name = name
            self.bytes = bytes
            self.total = total
        }
    }

    /// A block that failed verification, for a `retry` event.
    public struct Retry: Sendable, Equatable {
        /// The upload's id.
        public var upload: String
        /// The safe file name.
        public var name: String
        /// Where the block starts.
        public var offset: UInt64
        /// Why it failed (checksum mismatch, bad compressed data, ...).
        public var reason: String
        /// Blocks of this upload that failed so far, this one included.
        public var count: Int

        /// A retry report.
        public init(upload: String, name: String, offset: UInt64, reason: String, count: Int) {
            self.upload = upload
            self.name = name
            self.offset = offset
            self.reason = reason
            self.count = count
        }
    }

    /// A saved upload, for the `file_saved` event and the `saved` message.
    public struct Saved: Sendable, Equatable {
        /// The upload's id.
        public var upload: String
        /// The name it was saved under (relative to the directory).
        public var name: String
        /// Its absolute path.
        public var path: String
        /// Its size in bytes.
        public var bytes: UInt64
        /// Its SHA-256.
        public var sha256: [UInt8]
        /// Where this connection resumed (0 for a fresh upload).
        public var resumedFrom: UInt64

        /// A saved upload.
        public init(upload: String, name: String, path: String, bytes: UInt64, sha256: [UInt8], resumedFrom: UInt64) {
            self.upload = upload
            self.name = name
            self.path = path
            self.bytes = bytes
            self.sha256 = sha256
            self.resumedFrom = resumedFrom
        }
    }

    /// What to do after an offer arrived.
    public enum OfferAction: Sendable, Equatable {
        /// Claim the upload id of this valid offer in the store; call `claimed()` once the claim is ready.
        case claim(UploadOffer)
        /// Send an `error` and close with the code for this error.
        case fail(XferError.Code, String)
    }

    /// What to do once the claim is ready (or a busy upload is due to be tried again).
    public enum ClaimAction: Sendable, Equatable {
        /// Open (or resume) the partial upload in the store; then call `opened(offset:now:)`, `openFailed(_:_:)`
        /// or, when another server process writes it, `openBusy(_:now:)`.
        case open(UploadOffer)
        /// Nothing: the connection closed while the claim (or the retry) was pending: its release is under way.
        case none
    }

    /// What to do once the store opened the upload (or failed to).
    public enum OpenAction: Sendable, Equatable {
        /// Send `accept` with `offset` and report `progress`.
        case accept(offset: UInt64, progress: Progress)
        /// Another server process writes the upload: after `after` nanoseconds (without holding a thread), call
        /// `openRetryDue()`.
        case retry(after: UInt64)
        /// Send an `error` and close with the code for this error.
        case fail(XferError.Code, String)
        /// Nothing: the connection closed meanwhile.
        case none
    }

    /// What to do with a block that arrived.
    public enum BlockAction: Sendable, Equatable {
        /// Verify and write the block, then call `blockDequeued()` and `blockProcessed(at:outcome:now:)`.
        /// `pauseReading`: too many blocks are queued, stop reading the socket (back-pressure, not buffering).
        case write(pauseReading: Bool)
        /// Drop the block (sent before our accept or after a nack: the client sends it again).
        case drop
        /// Send an `error` and close with the code for this error.
        case fail(XferError.Code, String)
    }

    /// What the driver's verify-and-write step made of a block.
    public enum BlockOutcome: Sendable, Equatable {
        /// Verified and written: every byte before `verifiedOffset` is in the store.
        case written(verifiedOffset: UInt64)
        /// Failed its check (checksum, decompression, declared length): it did not touch the store.
        case corrupt(reason: String)
        /// Not written because it was queued behind a block that failed: the client sends it again.
        case dropped
        /// The store refused it (disk full, size limit, a stale claim); the verified part stays.
        case failed(XferError.Code, String)
    }

    /// What to do after a block was processed.
    public enum BlockProcessedAction: Sendable, Equatable {
        /// Send `block_ack` with `offset`; report `progress` if given.
        case ack(offset: UInt64, progress: Progress?)
        /// Report `retry`, then send `block_nack` for the block at `retry.offset`.
        case nack(Retry)
        /// Report `retry`, then fail with `checksum_failed`: the block failed too often.
        case giveUp(Retry, XferError.Code, String)
        /// Send an `error` and close with the code for this error.
        case fail(XferError.Code, String)
        /// Nothing to send.
        case none
    }

    /// Whether to start reading the socket again after a block left the queue.
    public enum ReadingAction: Sendable, Equatable {
        /// The queue drained to half: read again.
        case resumeReading
        /// Nothing to change.
        case none
    }

    /// What to do after `finish` arrived.
    public enum FinishAction: Sendable, Equatable {
        /// Wait for the last block's hash, then call `verified(digest:verifiedBytes:)` with the whole SHA-256.
        case computeDigest
        /// Send an `error` and close with the code for this error.
        case fail(XferError.Code, String)
    }

    /// What to do when a message that has no place in an upload arrived.
    public enum UnexpectedAction: Sendable, Equatable {
        /// Send an `error` and close with the code for this error.
        case fail(XferError.Code, String)
    }

    /// What to do once the digest of the written bytes is known.
    public enum VerifiedAction: Sendable, Equatable {
        /// It matches: commit the upload, then call `committed(name:path:)` or `commitFailed(_:_:)`.
        case commit
        /// It does not match: discard the partial upload (it cannot be trusted), then fail with this error.
        case discardAndFail(XferError.Code, String)
        /// Nothing: the connection closed meanwhile.
        case none
    }

    /// What to do once the upload was committed (or not).
    public enum CommitAction: Sendable, Equatable {
        /// Report the final `progress` and `file_saved`, then send `saved`.
        case saved(Saved, progress: Progress)
        /// The connection closed or failed while the store committed, but the file is saved: report the final
        /// `progress` and `file_saved` straight to the server's event sink (the connection's may be gone), and send
        /// nothing.
        case savedDetached(Saved, progress: Progress)
        /// Send an `error` and close with the code for this error.
        case fail(XferError.Code, String)
        /// Nothing: the connection closed meanwhile.
        case none
    }

    /// What to do when the connection closed.
    public enum CloseAction: Sendable, Equatable {
        /// Close the partial upload if it is open (keeping its data for a resume), then release the claim.
        case release
        /// Nothing was claimed.
        case none
    }

    /// An accepted upload while its blocks arrive.
    private struct Receiving: Sendable {
        /// The offer.
        var offer: UploadOffer
        /// The offset the next block from the wire must start at.
        var expected: UInt64
        /// Where this connection resumed.
        var resumedFrom: UInt64
        /// After a nack: the offset of the failed block; blocks already in flight are dropped until it comes again.
        var retryAt: UInt64?
        /// Verification failures per block offset.
        var retries: [UInt64: Int] = [:]
        /// Verification failures of the whole upload.
        var totalRetries = 0
        /// When the last progress was reported, and at how many bytes.
        var lastProgress: (time: UInt64, bytes: UInt64)

        func progress(_ bytes: UInt64) -> Progress {
            Progress(upload: self.offer.id, name: self.offer.name, bytes: bytes, total: self.offer.size)
        }
    }

    /// Where the upload stands.
    private enum State: Sendable {
        /// Nothing yet: the connection's first upload message must be an offer.
        case awaitingOffer
        /// The offer is valid; its claim waits for earlier holders of the upload id to let go.
        case claiming(UploadOffer)
        /// Claimed; the store opens or resumes the partial upload. `busySince`: when the store first found it busy
        /// (another server process writes it), nil until then.
        case opening(UploadOffer, busySince: UInt64?)
        /// Accepted: blocks arrive, in order, from the resume offset.
        case receiving(Receiving)
        /// `finish` arrived with the client's `size` and `sha256`; the driver computes the digest.
        case verifying(Receiving, size: UInt64, sha256: [UInt8])
        /// The digest matched; the store commits the upload.
        case committing(Receiving, size: UInt64, sha256: [UInt8])
        /// The connection closed, or the client broke the protocol, while the store commits: the file is still
        /// reported once it is saved. `claimed`: the claim is still held (its release waits for the close).
        case committingDetached(Receiving, size: UInt64, sha256: [UInt8], claimed: Bool)
        /// Saved, or failed: later messages are dropped; the claim is still held until the connection closes.
        case finished(claimed: Bool)
        /// The connection closed: everything is released.
        case closed
        /// Transient, while a state's data is mutated in place (avoids copying its dictionary).
        case modifying
    }

    private var state: State = .awaitingOffer
    private let limits: Limits
    /// Blocks handed to the driver and not yet processed.
    private var queued = 0
    /// Whether reading is paused for back-pressure.
    private var paused = false

    /// A machine for a new upload connection.
    public init(limits: Limits) {
        self.limits = limits
    }

    // MARK: Offer, claim, open

    /// An `offer` arrived with these fields.
    public mutating func offerReceived(_ fields: [String: String]) -> OfferAction {
        guard case .awaitingOffer = self.state else {
            self.markFailed()
            return .fail(.protocolError, "unexpected offer message during an upload")
        }
        do {
            let offer = try UploadOffer(
                fields: fields,
                maxBlockSize: self.limits.maxBlockSize,
                maxFileSize: self.limits.maxFileSize
            )
            self.state = .claiming(offer)
            return .claim(offer)
        } catch {
            self.state = .finished(claimed: false)
            return .fail(error.code, error.message)
        }
    }

    /// The claim on the offer's upload id is ready: every earlier holder has let go.
    public mutating func claimed() -> ClaimAction {
        switch self.state {
        case .claiming(let offer):
            self.state = .opening(offer, busySince: nil)
            return .open(offer)
        case .closed, .finished:
            // The connection closed (or failed) while the claim was pending: its release is under way.
            return .none
        case .awaitingOffer, .opening, .receiving, .verifying, .committing, .committingDetached, .modifying:
            preconditionFailure("claim ready in state \(self.state)")
        }
    }

    /// The wait after `openBusy(_:now:)` is over: try to open the upload again.
    public mutating func openRetryDue() -> ClaimAction {
        switch self.state {
        case .opening(let offer, _):
            return .open(offer)
        case .closed, .finished:
            // The connection closed (or failed) during the wait: its release is under way.
            return .none
        case .awaitingOffer, .claiming, .receiving, .verifying, .committing, .committingDetached, .modifying:
            preconditionFailure("open retry due in state \(self.state)")
        }
    }

    /// The store opened the upload; the client resumes from `offset`.
    public mutating func opened(offset: UInt64, now: UInt64) -> OpenAction {
        switch self.state {
        case .opening(let offer, _):
            let receiving = Receiving(
                offer: offer,
                expected: offset,
                resumedFrom: offset,
                lastProgress: (now, offset)
            )
            self.state = .receiving(receiving)
            return .accept(offset: offset, progress: receiving.progress(offset))
        case .closed, .finished:
            // The connection closed while the store opened the upload; closing it is queued behind the open.
            return .none
        case .awaitingOffer, .claiming, .receiving, .verifying, .committing, .committingDetached, .modifying:
            preconditionFailure("upload opened in state \(self.state)")
        }
    }

    /// The store could not open the upload because another server process writes it right now (`message` says so):
    /// it is tried again every `busyRetryInterval` until `busyWait` has passed since the first refusal, then the
    /// offer fails with `busy`.
    public mutating func openBusy(_ message: String, now: UInt64) -> OpenAction {
        switch self.state {
        case .opening(let offer, let busySince):
            let since = busySince ?? now
            guard now < since + self.limits.busyWait else {
                self.state = .finished(claimed: true)
                return .fail(.busy, message)
            }
            self.state = .opening(offer, busySince: since)
            return .retry(after: self.limits.busyRetryInterval)
        case .closed, .finished:
            return .none
        case .awaitingOffer, .claiming, .receiving, .verifying, .committing, .committingDetached, .modifying:
            preconditionFailure("open busy in state \(self.state)")
        }
    }

    /// The store could not open the upload (`busy` when another server writes it, `disk_full`, ...).
    public mutating func openFailed(_ code: XferError.Code, _ message: String) -> OpenAction {
        switch self.state {
        case .opening:
            self.state = .finished(claimed: true)
            return .fail(code, message)
        case .closed, .finished:
            return .none
        case .awaitingOffer, .claiming, .receiving, .verifying, .committing, .committingDetached, .modifying:
            preconditionFailure("open failed in state \(self.state)")
        }
    }

    // MARK: Blocks

    /// A block arrived starting at `offset` and declaring `rawLength` raw bytes.
    public mutating func blockReceived(offset: UInt64, rawLength: UInt32) -> BlockAction {
        switch self.state {
        case .receiving(var receiving):
            if let retryAt = receiving.retryAt {
                // After a nack, blocks already in flight are dropped until the failed one comes again.
                guard offset == retryAt else { return .drop }
                receiving.retryAt = nil
            }
            let expected = receiving.expected
            let offer = receiving.offer
            guard offset == expected else {
                self.markFailed()
                return .fail(.protocolError, "block at offset \(offset) arrived, \(expected) was expected")
            }
            guard rawLength > 0, Int(rawLength) <= offer.blockSize else {
                self.markFailed()
                return .fail(
                    .protocolError,
                    "block at \(offset) declares \(rawLength) bytes; blocks are at most \(offer.blockSize)"
                )
            }
            let end = expected + UInt64(rawLength)
            if let size = offer.size, end > size {
                self.markFailed()
                return .fail(.protocolError, "block at \(offset) goes past the declared size of \(size) bytes")
            }
            if end > self.limits.maxFileSize {
                self.markFailed()
                return .fail(
                    .fileTooLarge,
                    "\(offer.name) grew past the server's limit of \(self.limits.maxFileSize) bytes (--max-file-size)"
                )
            }
            receiving.expected = end
            self.state = .receiving(receiving)
            self.queued += 1
            guard self.queued >= self.limits.maxQueuedBlocks && !self.paused else { return .write(pauseReading: false) }
            self.paused = true
            return .write(pauseReading: true)
        case .claiming, .opening, .verifying, .committing, .committingDetached, .finished, .closed:
            // Blocks sent before our accept, after the finish or after a failure can still be in flight: dropped.
            return .drop
        case .awaitingOffer:
            self.markFailed()
            return .fail(.protocolError, "unexpected block message during an upload")
        case .modifying:
            preconditionFailure("block received in state \(self.state)")
        }
    }

    /// A block handed out with `.write` left the driver's queue (whatever became of it).
    public mutating func blockDequeued() -> ReadingAction {
        self.queued -= 1
        guard self.paused && self.queued <= self.limits.maxQueuedBlocks / 2 else { return .none }
        self.paused = false
        return .resumeReading
    }

    /// The driver verified and wrote (or refused) the block at `offset`.
    public mutating func blockProcessed(at offset: UInt64, outcome: BlockOutcome, now: UInt64) -> BlockProcessedAction {
        guard case .receiving(var receiving) = self.state else {
            // Finished, failed or closed meanwhile: the outcome of a block still queued then does not matter.
            return .none
        }
        switch outcome {
        case .written(let verified):
            let interval = self.limits.progressInterval
            let last = receiving.lastProgress
            guard now >= last.time + interval, verified != last.bytes else {
                return .ack(offset: verified, progress: nil)
            }
            receiving.lastProgress = (now, verified)
            self.state = .receiving(receiving)
            return .ack(offset: verified, progress: receiving.progress(verified))
        case .dropped:
            return .none
        case .corrupt(let reason):
            self.state = .modifying
            let count = (receiving.retries[offset] ?? 0) + 1
            receiving.retries[offset] = count
            receiving.totalRetries += 1
            let retry = Retry(
                upload: receiving.offer.id,
                name: receiving.offer.name,
                offset: offset,
                reason: reason,
                count: receiving.totalRetries
            )
            guard count <= self.limits.maxRetriesPerBlock else {
                self.state = .finished(claimed: true)
                return .giveUp(
                    retry,
                    .checksumFailed,
                    "block at offset \(offset) of \(receiving.offer.name) failed verification \(count) times (\(reason)); the source may be changing or the network corrupts data"
                )
            }
            receiving.retryAt = offset
            receiving.expected = offset
            self.state = .receiving(receiving)
            return .nack(retry)
        case .failed(let code, let message):
            self.markFailed()
            return .fail(code, message)
        }
    }

    // MARK: Finish, commit

    /// `finish` arrived: the client sent `size` bytes in all, with this SHA-256.
    public mutating func finishReceived(size: UInt64, sha256: [UInt8]) -> FinishAction {
        guard case .receiving(let receiving) = self.state else {
            self.markFailed()
            return .fail(.protocolError, "unexpected finish message during an upload")
        }
        if let retryAt = receiving.retryAt {
            self.state = .finished(claimed: true)
            return .fail(.protocolError, "finish arrived while block \(retryAt) was still being resent")
        }
        guard receiving.expected == size else {
            self.state = .finished(claimed: true)
            return .fail(.integrityFailed, "finish says \(size) bytes but \(receiving.expected) were sent")
        }
        self.state = .verifying(receiving, size: size, sha256: sha256)
        return .computeDigest
    }

    /// The SHA-256 of the `verifiedBytes` bytes in the store is `digest`.
    public mutating func verified(digest: [UInt8], verifiedBytes: UInt64) -> VerifiedAction {
        switch self.state {
        case .verifying(let receiving, let size, let sha256):
            guard digest == sha256, verifiedBytes == size else {
                self.state = .finished(claimed: true)
                return .discardAndFail(
                    .integrityFailed,
                    "\(receiving.offer.name): SHA-256 of the \(verifiedBytes) bytes received is \(Hex.encode(digest)), the client computed \(Hex.encode(sha256)); the partial upload was discarded (did the source change?)"
                )
            }
            self.state = .committing(receiving, size: size, sha256: sha256)
            return .commit
        case .closed, .finished:
            // The connection closed (or the client broke the protocol) while the digest was computed: the
            // partial stays for a resume.
            return .none
        case .awaitingOffer, .claiming, .opening, .receiving, .committing, .committingDetached, .modifying:
            preconditionFailure("digest computed in state \(self.state)")
        }
    }

    /// The store saved the upload as `name` at `path`.
    public mutating func committed(name: String, path: String) -> CommitAction {
        switch self.state {
        case .committing(let receiving, let size, let sha256):
            self.state = .finished(claimed: true)
            let saved = Saved(
                upload: receiving.offer.id,
                name: name,
                path: path,
                bytes: size,
                sha256: sha256,
                resumedFrom: receiving.resumedFrom
            )
            return .saved(saved, progress: receiving.progress(size))
        case .committingDetached(let receiving, let size, let sha256, let claimed):
            // Saved, but the client is gone or failed meanwhile: the file is in the directory, so it is reported.
            self.state = claimed ? .finished(claimed: true) : .closed
            let saved = Saved(
                upload: receiving.offer.id,
                name: name,
                path: path,
                bytes: size,
                sha256: sha256,
                resumedFrom: receiving.resumedFrom
            )
            return .savedDetached(saved, progress: receiving.progress(size))
        case .closed, .finished:
            // Answered after a save or a failure already ended the upload: nothing more to report.
            return .none
        case .awaitingOffer, .claiming, .opening, .receiving, .verifying, .modifying:
            preconditionFailure("upload committed in state \(self.state)")
        }
    }

    /// The store could not commit the upload.
    public mutating func commitFailed(_ code: XferError.Code, _ message: String) -> CommitAction {
        switch self.state {
        case .committing:
            self.state = .finished(claimed: true)
            return .fail(code, message)
        case .committingDetached(_, _, _, let claimed):
            // Nothing was saved, and nobody is left to tell: the partial upload stays for a resume.
            self.state = claimed ? .finished(claimed: true) : .closed
            return .none
        case .closed, .finished:
            return .none
        case .awaitingOffer, .claiming, .opening, .receiving, .verifying, .modifying:
            preconditionFailure("commit failed in state \(self.state)")
        }
    }

    // MARK: Unexpected messages, close

    /// A message of type `typeName` arrived that has no place in an upload (anything but offer, block and finish).
    public mutating func unexpectedMessage(_ typeName: String) -> UnexpectedAction {
        self.markFailed()
        return .fail(.protocolError, "unexpected \(typeName) message during an upload")
    }

    /// The connection closed (or failed): whatever was claimed is released. During a commit the release is queued
    /// behind it, and the commit's outcome is still reported.
    public mutating func connectionClosed() -> CloseAction {
        let wasClaimed: Bool
        switch self.state {
        case .awaitingOffer, .closed:
            wasClaimed = false
        case .finished(let claimed):
            wasClaimed = claimed
        case .committing(let receiving, let size, let sha256):
            self.state = .committingDetached(receiving, size: size, sha256: sha256, claimed: false)
            return .release
        case .committingDetached(let receiving, let size, let sha256, let claimed):
            self.state = .committingDetached(receiving, size: size, sha256: sha256, claimed: false)
            return claimed ? .release : .none
        case .claiming, .opening, .receiving, .verifying:
            wasClaimed = true
        case .modifying:
            preconditionFailure("connection closed in state \(self.state)")
        }
        self.state = .closed
        return wasClaimed ? .release : .none
    }

    /// Ends the upload with an error; the claim (if any) is released when the connection closes. A commit under
    /// way goes on, and its outcome is still reported.
    private mutating func markFailed() {
        switch self.state {
        case .committing(let receiving, let size, let sha256):
            self.state = .committingDetached(receiving, size: size, sha256: sha256, claimed: true)
        case .committingDetached, .closed:
            break
        case .awaitingOffer, .claiming, .opening, .receiving, .verifying, .finished, .modifying:
            self.state = .finished(claimed: self.isClaimed)
        }
    }

    /// Whether the current state holds a claim.
    private var isClaimed: Bool {
        switch self.state {
        case .awaitingOffer, .closed: return false
        case .finished(let claimed): return claimed
        case .committingDetached(_, _, _, let claimed): return claimed
        case .claiming, .opening, .receiving, .verifying, .committing, .modifying: return true
        }
    }
}
