/// The client side of one upload, as a value: which blocks to read, send, resend and release, across as many
/// connections as the upload takes.
///
/// It tracks offsets and lengths only. The driver (`UploadJob`) holds the block buffers in the same order the
/// machine names them: a dictionary of ready blocks by offset, and an array of blocks in flight (sent, not yet
/// acknowledged, oldest first). It reads, hashes, compresses and masks, and does exactly what each action says.
///
/// Blocks stay in the driver's memory from the moment they are read until the server acknowledges them, at most
/// `window` of them: that bounds memory and is the replay window that lets a stream, which cannot be re-read,
/// survive a reconnect. A seekable file whose server resumes outside that window is read again from there.
public struct UploadSenderStateMachine: Sendable {
    /// One block the driver holds: where it starts in the upload and how many raw bytes it carries.
    private struct Block: Sendable {
        /// Offset of its first byte in the upload.
        var offset: UInt64
        /// Raw (uncompressed) bytes in it.
        var length: Int
    }

    /// Where the upload stands with the current connection.
    private enum State: Sendable {
        /// No connection: blocks may still be read to fill the window, none are sent.
        case detached
        /// The offer went out on a new connection; waiting for the server's `accept`.
        case offered
        /// The server accepted; blocks flow. `finishSent` is set once the end is reached and `finish` is due
        /// (sent, or waiting for the digest).
        case accepted(finishSent: Bool)
        /// The server saved the upload under `name`.
        case saved(name: String)
        /// The upload failed in a way no reconnect can fix.
        case failed(XferError)
    }

    /// Where the SHA-256 of the whole upload stands.
    private enum Digest: Sendable {
        /// Not asked for yet.
        case unknown
        /// The driver is computing it.
        case computing
        /// Computed.
        case known([UInt8])
    }

    /// What to do when a connection is ready for the upload.
    public enum ConnectAction: Sendable {
        /// Send the offer.
        case sendOffer
        /// The upload already failed (the failure raced with the reconnect): end the connection with `error`.
        case fail(XferError)
    }

    /// What to do after the server's `accept`.
    public enum AcceptAction: Sendable {
        /// The server has everything before the offset: give the first `releasing` blocks in flight back, move
        /// the rest (masked afresh) to the ready blocks, report `progress` bytes, then pump.
        case resume(releasing: Int, progress: UInt64)
        /// The server's offset lies outside the retained blocks of a seekable file: drop every held block, read
        /// again from `offset` with reads of `generation` (older ones are stale), re-hash the bytes before it,
        /// report `offset` bytes of progress, then pump.
        case restart(at: UInt64, generation: Int)
        /// End the connection with `error` (also `failure` when it is fatal).
        case fail(XferError)
        /// Nothing: no connection is waiting for an accept (a race with the connection ending).
        case ignore
    }

    /// What to do after the server acknowledged bytes.
    public enum AckAction: Sendable {
        /// Give the first `count` blocks in flight back; report `progress` bytes when it is not nil; then pump.
        case release(count: Int, progress: UInt64?)
        /// End the connection with `error`: the server acknowledged bytes it was never sent.
        case fail(XferError)
        /// Nothing: an old or repeated acknowledgement, or one after the connection ended.
        case ignore
    }

    /// What to do after the server rejected a block.
    public enum NackAction: Sendable, Equatable {
        /// Report retry number `retry` of the block at `offset`, move blocks in flight from `index` on (masked
        /// afresh) to the ready blocks, then pump.
        case resend(index: Int, offset: UInt64, retry: Int)
        /// Nothing: the block is not in flight (already resent, or the connection ended).
        case ignore
    }

    /// What the driver should read next.
    public enum ReadAction: Sendable, Equatable {
        /// Read the block at `offset`: `expected` bytes (nil for a stream: up to a block); stamp it `generation`.
        case read(offset: UInt64, expected: Int?, generation: Int)
        /// Nothing more may be read now.
        case idle
    }

    /// What to do with a block the driver finished preparing.
    public enum PreparedAction: Sendable, Equatable {
        /// Keep it with the ready blocks, under its offset; then pump.
        case store
        /// Drop it (stale, empty or past the end of a stream); then pump.
        case discard
    }

    /// What the driver should send next.
    public enum SendAction: Sendable, Equatable {
        /// Send the ready block at `offset` and append it to the blocks in flight.
        case send(offset: UInt64)
        /// Everything is acknowledged, but the SHA-256 is unknown: compute it, then call `digestComputed`.
        case computeDigest
        /// Send `finish` with the upload's size and SHA-256.
        case finish(size: UInt64, sha256: [UInt8])
        /// Nothing to send now.
        case idle
    }

    /// What to do once the SHA-256 is known.
    public enum DigestAction: Sendable, Equatable {
        /// Send `finish` with the upload's size and SHA-256.
        case finish(size: UInt64, sha256: [UInt8])
        /// Nothing: no connection is ready for it; the next accepted one sends it.
        case idle
    }

    /// What to do after a stream's last short block was read.
    public enum StreamEndAction: Sendable, Equatable {
        /// The total is now known: `total` bytes.
        case totalKnown(UInt64)
        /// Nothing new.
        case idle
    }

    /// What to do after reading failed.
    public enum ReadFailureAction: Sendable {
        /// The upload failed with `error`: end the connection, if any, with it.
        case fail(XferError)
        /// Nothing: the upload had already ended.
        case idle
    }

    /// What to do after the server said it saved the upload.
    public enum SavedAction: Sendable {
        /// Done: report `progress` bytes and end the connection normally.
        case done(progress: UInt64)
        /// End the connection with `error` (also `failure` when it is fatal).
        case fail(XferError)
    }

    /// Raw bytes per block; every block but a stream's or file's last starts on this grid.
    public let blockSize: Int
    /// Most blocks read, being prepared, ready or in flight at once.
    public let window: Int
    /// Whether the source can be read again at any offset (a file) or only once in order (a stream).
    public let isSeekable: Bool
    /// Shortest time between two unforced progress reports, in nanoseconds.
    public let progressInterval: UInt64

    private var state: State = .detached
    private var digest: Digest = .unknown
    private var endOffset: UInt64?
    private var nextReadOffset: UInt64 = 0
    private var nextSendOffset: UInt64 = 0
    private var ackedOffset: UInt64 = 0
    /// Reads scheduled whose block has not come back yet.
    private var preparing = 0
    /// Raw length of each ready block, by offset (the driver's ready frames, same keys).
    private var ready: [UInt64: Int] = [:]
    /// Blocks sent and not acknowledged, oldest first (the driver's in-flight frames, same order).
    private var inFlight: [Block] = []
    private var generation = 0
    private var retries = 0
    private var lastProgress: UInt64 = 0
    private var lastAccepted: UInt64?

    /// A machine for an upload of `size` bytes (nil for a stream until it ends) in blocks of `blockSize`.
    public init(blockSize: Int, window: Int, isSeekable: Bool, size: UInt64?, progressInterval: UInt64 = 250_000_000) {
        precondition(blockSize > 0 && window > 0, "block size \(blockSize) and window \(window) must be positive")
        self.blockSize = blockSize
        self.window = window
        self.isSeekable = isSeekable
        self.endOffset = size
        self.progressInterval = progressInterval
        self.ready.reserveCapacity(window)
        self.inFlight.reserveCapacity(window)
    }

    // MARK: What the driver reports on

    /// The upload's size: known from the start for a file, once the last block is read for a stream.
    public var total: UInt64? { self.endOffset }

    /// Bytes the server has acknowledged as verified.
    public var acknowledgedBytes: UInt64 { self.ackedOffset }

    /// Where the server resumed on the latest connection it accepted (nil before any): the server's `file_saved`
    /// reports the same offset for the connection that finishes the upload.
    public var resumedFrom: UInt64? { self.lastAccepted }

    /// The server's name for the saved upload, once saved.
    public var savedName: String? {
        if case .saved(let name) = self.state { return name }
        return nil
    }

    /// The failure no reconnect can fix, if there was one.
    public var failure: XferError? {
        if case .failed(let error) = self.state { return error }
        return nil
    }

    /// The SHA-256 of the whole upload, once computed.
    public var sha256: [UInt8]? {
        if case .known(let digest) = self.digest { return digest }
        return nil
    }

    /// Where the upload stands once a session has ended, for the reconnect loop.
    public enum SessionVerdict: Sendable {
        /// The server saved the upload under `name`: nothing more to do.
        case saved(name: String)
        /// It failed in a way no other session can mend (a changed source, a digest the server disputes).
        case fatal(XferError)
        /// It is not finished: `error` says why this session ended; another session may go on with it.
        case unfinished(XferError, afterWelcome: Bool)
    }

    /// A session carrying upload `name` ended, with `failure` or with a normal close (nil); `afterWelcome` says
    /// whether its handshake had completed.
    public func sessionEnded(failure: XferError?, afterWelcome: Bool, name: String) -> SessionVerdict {
        switch self.state {
        case .saved(let saved):
            return .saved(name: saved)
        case .failed(let error):
            return .fatal(error)
        case .detached, .offered, .accepted:
            guard let failure else {
                // A server that closes normally before `saved` has not saved it: worth another connection.
                return .unfinished(
                    XferError(.connectionLost, "the server closed the upload of \(name) before saving it"),
                    afterWelcome: false
                )
            }
            return .unfinished(failure, afterWelcome: afterWelcome)
        }
    }

    // MARK: Connection lifecycle

    /// A connection is ready to carry the upload.
    public mutating func connected() -> ConnectAction {
        switch self.state {
        case .detached:
            self.state = .offered
            return .sendOffer
        case .failed(let error):
            return .fail(error)
        case .offered, .accepted, .saved:
            preconditionFailure("connected() in state \(self.state)")
        }
    }

    /// The connection ended (normally or not): the upload waits for the next one, keeping its blocks.
    public mutating func disconnected() {
        switch self.state {
        case .offered, .accepted:
            self.state = .detached
        case .detached, .saved, .failed:
            break
        }
    }

    /// The server accepted the upload and has its first `offset` bytes.
    public mutating func accepted(offset: UInt64, now: UInt64) -> AcceptAction {
        switch self.state {
        case .offered:
            break
        case .accepted:
            return .fail(XferError(.protocolError, "server accepted the upload twice"))
        case .detached, .saved, .failed:
            // A message after the connection ended, or after the upload did: nothing is listening for it.
            return .ignore
        }
        if let end = self.endOffset, offset > end {
            return .fail(XferError(.protocolError, "server resumes at \(offset), past the end (\(end))"))
        }
        guard offset % UInt64(self.blockSize) == 0 || offset == self.endOffset else {
            return .fail(XferError(.protocolError, "server resumes at \(offset), not a block boundary"))
        }
        let oldestRetained = self.inFlight.first?.offset ?? self.nextSendOffset
        let action: AcceptAction
        if offset >= oldestRetained && offset <= self.nextSendOffset {
            // The server has everything before `offset`: resend what it lacks from the retained blocks.
            let releasing = self.inFlight.firstIndex { $0.offset >= offset } ?? self.inFlight.count
            for block in self.inFlight[releasing...] {
                self.ready[block.offset] = block.length
            }
            self.inFlight.removeAll(keepingCapacity: true)
            action = .resume(releasing: releasing, progress: offset)
        } else if offset > self.nextSendOffset && !self.isSeekable {
            return .fail(
                XferError(
                    .protocolError,
                    "server claims \(offset) bytes of a stream that sent only \(self.nextSendOffset)"
                )
            )
        } else if self.isSeekable {
            // A jump: the server has a different amount (a previous run, or it lost data). Read again from there;
            // blocks being prepared now belong to the old position and come back stale.
            self.generation += 1
            self.ready.removeAll(keepingCapacity: true)
            self.inFlight.removeAll(keepingCapacity: true)
            self.nextReadOffset = offset
            action = .restart(at: offset, generation: self.generation)
        } else {
            let error = XferError(
                .replayWindowExceeded,
                "the server has \(offset) bytes of the stream but only bytes from \(oldestRetained) are still in memory (replay window \(self.window) blocks of \(self.blockSize) bytes); the stream cannot be resumed"
            )
            self.state = .failed(error)
            return .fail(error)
        }
        self.nextSendOffset = offset
        self.ackedOffset = offset
        self.lastAccepted = offset
        self.lastProgress = now
        self.state = .accepted(finishSent: false)
        return action
    }

    /// The server verified and wrote everything before `offset`.
    public mutating func acknowledged(upTo offset: UInt64, now: UInt64) -> AckAction {
        switch self.state {
        case .accepted:
            break
        case .offered:
            return .fail(XferError(.protocolError, "server acknowledged \(offset) bytes before accepting the upload"))
        case .detached, .saved, .failed:
            // A message after the connection ended, or after the upload did: nothing is listening for it.
            return .ignore
        }
        guard offset > self.ackedOffset, offset <= self.nextSendOffset else {
            if offset > self.nextSendOffset {
                return .fail(
                    XferError(
                        .protocolError,
                        "server acknowledged \(offset) bytes, only \(self.nextSendOffset) were sent"
                    )
                )
            }
            return .ignore
        }
        self.ackedOffset = offset
        var count = 0
        while count < self.inFlight.count,
            self.inFlight[count].offset + UInt64(self.inFlight[count].length) <= offset
        {
            count += 1
        }
        self.inFlight.removeFirst(count)
        return .release(count: count, progress: self.progress(offset, now: now))
    }

    /// The server rejected the block at `offset` (a failed checksum, say): it wants it and what follows again.
    public mutating func rejected(at offset: UInt64) -> NackAction {
        guard case .accepted = self.state, let index = self.inFlight.firstIndex(where: { $0.offset == offset }) else {
            return .ignore
        }
        self.retries += 1
        for block in self.inFlight[index...] {
            self.ready[block.offset] = block.length
        }
        self.inFlight.removeSubrange(index...)
        self.nextSendOffset = offset
        return .resend(index: index, offset: offset, retry: self.retries)
    }

    /// The server saved the upload: `size` bytes with SHA-256 `sha256`, under `name`.
    public mutating func saved(size: UInt64, sha256: [UInt8], name: String) -> SavedAction {
        guard case .accepted(finishSent: true) = self.state, case .known(let digest) = self.digest else {
            return .fail(XferError(.protocolError, "server saved the upload before it was finished"))
        }
        guard sha256 == digest, size == self.endOffset else {
            let error = XferError(
                .integrityFailed,
                "server saved \(size) bytes with SHA-256 \(Self.hex(sha256)), expected \(Self.hex(digest))"
            )
            self.state = .failed(error)
            return .fail(error)
        }
        self.state = .saved(name: name)
        return .done(progress: size)
    }

    // MARK: Reading and sending

    /// Asks what to read next; a `.read` counts against the window until `blockPrepared` or `readFailed`.
    public mutating func nextRead() -> ReadAction {
        switch self.state {
        case .saved, .failed:
            return .idle
        case .detached, .offered, .accepted:
            break
        }
        guard self.preparing + self.ready.count + self.inFlight.count < self.window else { return .idle }
        let offset = self.nextReadOffset
        var expected: Int?
        if let end = self.endOffset {
            guard offset < end else { return .idle }
            expected = Int(min(UInt64(self.blockSize), end - offset))
        }
        self.preparing += 1
        self.nextReadOffset += UInt64(self.blockSize)
        return .read(offset: offset, expected: expected, generation: self.generation)
    }

    /// A read of `generation` came back with the block at `offset` prepared: `length` raw bytes (0 when nothing
    /// was read, or the read was skipped as stale).
    public mutating func blockPrepared(offset: UInt64, length: Int, generation: Int) -> PreparedAction {
        precondition(self.preparing > 0, "blockPrepared(offset: \(offset)) with no read outstanding")
        self.preparing -= 1
        guard generation == self.generation, length > 0, offset < self.endOffset ?? .max else { return .discard }
        switch self.state {
        case .saved, .failed:
            return .discard
        case .detached, .offered, .accepted:
            self.ready[offset] = length
            return .store
        }
    }

    /// Reading the stream returned fewer bytes than a block: it ends at `end`.
    public mutating func streamEnded(at end: UInt64) -> StreamEndAction {
        // A later empty read reports its own (larger) offset: the first, smallest end is the real one.
        guard self.endOffset.map({ end < $0 }) ?? true else { return .idle }
        self.endOffset = end
        return .totalKnown(end)
    }

    /// A scheduled read failed with `error` (an unreadable or changed source).
    public mutating func readFailed(_ error: XferError) -> ReadFailureAction {
        precondition(self.preparing > 0, "readFailed with no read outstanding")
        self.preparing -= 1
        switch self.state {
        case .saved, .failed:
            return .idle
        case .detached, .offered, .accepted:
            self.state = .failed(error)
            return .fail(error)
        }
    }

    /// Asks what to send next; `canWrite` says whether the connection takes another block now.
    public mutating func nextSend(canWrite: Bool) -> SendAction {
        guard case .accepted(let finishSent) = self.state else { return .idle }
        if canWrite, let length = self.ready.removeValue(forKey: self.nextSendOffset) {
            let offset = self.nextSendOffset
            self.inFlight.append(Block(offset: offset, length: length))
            self.nextSendOffset += UInt64(length)
            return .send(offset: offset)
        }
        guard !finishSent, let end = self.endOffset, self.ackedOffset == end, self.preparing == 0 else {
            return .idle
        }
        self.state = .accepted(finishSent: true)
        switch self.digest {
        case .known(let digest):
            return .finish(size: end, sha256: digest)
        case .computing:
            return .idle
        case .unknown:
            self.digest = .computing
            return .computeDigest
        }
    }

    /// The SHA-256 asked for by `.computeDigest` is `digest`.
    public mutating func digestComputed(_ digest: [UInt8]) -> DigestAction {
        self.digest = .known(digest)
        guard case .accepted(finishSent: true) = self.state, let end = self.endOffset else { return .idle }
        return .finish(size: end, sha256: digest)
    }

    /// The bytes to report as progress at `now`, or nil when the last report is too recent.
    private mutating func progress(_ bytes: UInt64, now: UInt64) -> UInt64? {
        guard now < self.lastProgress || now - self.lastProgress >= self.progressInterval else { return nil }
        self.lastProgress = now
        return bytes
    }

    /// Lowercase hexadecimal, for messages.
    private static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}
