import NIOCore
import Testing
import XferProtocol

/// Drives `UploadReceiverStateMachine` through every path the upload fault tests cover, without sockets: the
/// test plays the driver (store, verify-and-write, hashing) and checks each action.
@Suite struct UploadReceiverStateMachineTests {
    typealias Machine = UploadReceiverStateMachine

    static let block = 4096
    static let id = "0123456789abcdef0123456789abcdef"
    static let limits = Machine.Limits(maxFileSize: 1 << 20)
    static let second: UInt64 = 1_000_000_000

    static func fields(size: UInt64? = 4 * 4096, kind: String = "file") -> [String: String] {
        var fields = [
            "upload": id, "name": "data.bin", "block_size": String(block), "mtime": "1", "kind": kind,
        ]
        if let size { fields["size"] = String(size) }
        return fields
    }

    static func offer(size: UInt64? = 4 * 4096) throws -> UploadOffer {
        try UploadOffer(fields: fields(size: size), maxBlockSize: 16 << 20, maxFileSize: limits.maxFileSize)
    }

    /// A machine that accepted the offer of `size` bytes and resumes at `offset`.
    static func accepted(
        size: UInt64? = 4 * 4096,
        offset: UInt64 = 0,
        limits: Machine.Limits = limits
    ) throws
        -> Machine
    {
        var machine = Machine(limits: limits)
        #expect(machine.offerReceived(fields(size: size)) == .claim(try offer(size: size)))
        #expect(machine.claimed() == .open(try offer(size: size)))
        let progress = Machine.Progress(upload: id, name: "data.bin", bytes: offset, total: size)
        #expect(machine.opened(offset: offset, now: 0) == .accept(offset: offset, progress: progress))
        return machine
    }

    /// Sends the block at `offset` through the machine and writes it: returns the action after writing.
    static func write(_ machine: inout Machine, at offset: UInt64, now: UInt64 = 0) -> Machine.BlockProcessedAction {
        #expect(machine.blockReceived(offset: offset, rawLength: UInt32(block)) == .write(pauseReading: false))
        #expect(machine.blockDequeued() == .none)
        return machine.blockProcessed(
            at: offset,
            outcome: .written(verifiedOffset: offset + UInt64(block)),
            now: now
        )
    }

    /// Finishes an upload of `size` bytes whose digest matches and commits it.
    static func finish(_ machine: inout Machine, size: UInt64, resumedFrom: UInt64) {
        let sha = [UInt8](repeating: 7, count: 32)
        #expect(machine.finishReceived(size: size, sha256: sha) == .computeDigest)
        #expect(machine.verified(digest: sha, verifiedBytes: size) == .commit)
        let saved = Machine.Saved(
            upload: id,
            name: "data.bin",
            path: "/srv/data.bin",
            bytes: size,
            sha256: sha,
            resumedFrom: resumedFrom
        )
        let progress = Machine.Progress(upload: id, name: "data.bin", bytes: size, total: size)
        #expect(machine.committed(name: "data.bin", path: "/srv/data.bin") == .saved(saved, progress: progress))
        #expect(machine.connectionClosed() == .release)
    }

    // MARK: Offer, claim, open

    @Test func aFreshUploadIsAcceptedAtZeroWrittenAndSaved() throws {
        var machine = try Self.accepted()
        for index in 0..<4 {
            let offset = UInt64(index * Self.block)
            #expect(Self.write(&machine, at: offset) == .ack(offset: offset + 4096, progress: nil))
        }
        Self.finish(&machine, size: 4 * 4096, resumedFrom: 0)
    }

    @Test func aBadOfferFailsWithItsCodeAndClaimsNothing() {
        var machine = Machine(limits: Self.limits)
        var fields = Self.fields()
        fields["upload"] = "NOT-HEX"
        #expect(
            machine.offerReceived(fields)
                == .fail(.protocolError, "offer needs an upload id of 16-64 lowercase hex digits")
        )
        #expect(machine.blockReceived(offset: 0, rawLength: 4096) == .drop)
        #expect(machine.connectionClosed() == .none)
    }

    @Test func anOfferOverTheLimitIsFileTooLarge() {
        var machine = Machine(limits: Self.limits)
        guard case .fail(let code, _) = machine.offerReceived(Self.fields(size: 2 << 20)) else {
            Issue.record("an offer over --max-file-size was claimed")
            return
        }
        #expect(code == .fileTooLarge)
    }

    @Test func aSecondOfferIsAProtocolError() throws {
        var machine = try Self.accepted()
        #expect(
            machine.offerReceived(Self.fields()) == .fail(.protocolError, "unexpected offer message during an upload")
        )
        #expect(machine.connectionClosed() == .release)
    }

    @Test func blocksBeforeTheAcceptAreDroppedAndABlockBeforeTheOfferFails() throws {
        var machine = Machine(limits: Self.limits)
        #expect(
            machine.blockReceived(offset: 0, rawLength: 4096)
                == .fail(.protocolError, "unexpected block message during an upload")
        )
        var claiming = Machine(limits: Self.limits)
        _ = claiming.offerReceived(Self.fields())
        #expect(claiming.blockReceived(offset: 0, rawLength: 4096) == .drop)
        _ = claiming.claimed()
        #expect(claiming.blockReceived(offset: 0, rawLength: 4096) == .drop)
    }

    @Test func aConnectionClosedWhileClaimingReleasesAndIgnoresTheLateClaim() {
        var machine = Machine(limits: Self.limits)
        _ = machine.offerReceived(Self.fields())
        #expect(machine.connectionClosed() == .release)
        #expect(machine.claimed() == .none)
    }

    @Test func aConnectionClosedWhileOpeningIgnoresTheLateOpen() {
        var machine = Machine(limits: Self.limits)
        _ = machine.offerReceived(Self.fields())
        _ = machine.claimed()
        #expect(machine.connectionClosed() == .release)
        #expect(machine.opened(offset: 4096, now: 0) == .none)
    }

    /// Another server process writes the same upload (one --dir shared): the store refuses with `busy`.
    @Test func aBusyUploadFailsWithBusyAndReleasesTheClaim() {
        var machine = Machine(limits: Self.limits)
        _ = machine.offerReceived(Self.fields())
        _ = machine.claimed()
        let message = "another xfer server on this --dir is writing upload x right now"
        #expect(machine.openFailed(.busy, message) == .fail(.busy, message))
        #expect(machine.blockReceived(offset: 0, rawLength: 4096) == .drop)
        #expect(machine.connectionClosed() == .release)
    }

    /// Another server process writes the upload: the open is tried again every 25 ms, without holding a thread,
    /// until 2 s after the first refusal; then the offer fails with `busy`.
    @Test func aBusyUploadIsTriedAgainUntilTheWaitRunsOut() throws {
        var machine = Machine(limits: Self.limits)
        _ = machine.offerReceived(Self.fields())
        _ = machine.claimed()
        let message = "another xfer server on this --dir is writing upload x right now"
        let start = 5 * Self.second
        #expect(machine.openBusy(message, now: start) == .retry(after: 25_000_000))
        #expect(machine.openRetryDue() == .open(try Self.offer()))
        #expect(machine.openBusy(message, now: start + Self.second) == .retry(after: 25_000_000))
        #expect(machine.openRetryDue() == .open(try Self.offer()))
        #expect(machine.openBusy(message, now: start + 2 * Self.second) == .fail(.busy, message))
        #expect(machine.connectionClosed() == .release)
    }

    /// The other server lets go within the wait: the retried open succeeds and the upload is accepted.
    @Test func aBusyUploadThatIsFreedInTimeIsAccepted() throws {
        var machine = Machine(limits: Self.limits)
        _ = machine.offerReceived(Self.fields())
        _ = machine.claimed()
        #expect(machine.openBusy("busy", now: 0) == .retry(after: 25_000_000))
        #expect(machine.openRetryDue() == .open(try Self.offer()))
        let progress = Machine.Progress(upload: Self.id, name: "data.bin", bytes: 4096, total: 4 * 4096)
        #expect(machine.opened(offset: 4096, now: Self.second) == .accept(offset: 4096, progress: progress))
    }

    /// The client leaves while a busy open waits for its next try: the retry does nothing.
    @Test func aConnectionClosedDuringABusyWaitCancelsTheRetry() {
        var machine = Machine(limits: Self.limits)
        _ = machine.offerReceived(Self.fields())
        _ = machine.claimed()
        #expect(machine.openBusy("busy", now: 0) == .retry(after: 25_000_000))
        #expect(machine.connectionClosed() == .release)
        #expect(machine.openRetryDue() == .none)
        #expect(machine.openBusy("busy", now: 0) == .none)
    }

    // MARK: Resume

    /// A connection cut after any number of blocks: the next connection resumes where the store says.
    @Test(arguments: 0...4)
    func aCutAtAnyBlockResumesAtTheStoresOffset(_ written: Int) throws {
        var first = try Self.accepted()
        for index in 0..<written {
            _ = Self.write(&first, at: UInt64(index * Self.block))
        }
        // One more block in flight when the connection drops: its outcome comes after the close and is ignored.
        if written < 4 {
            #expect(
                first.blockReceived(offset: UInt64(written * Self.block), rawLength: 4096)
                    == .write(pauseReading: false)
            )
        }
        #expect(first.connectionClosed() == .release)
        if written < 4 {
            _ = first.blockDequeued()
            let late = first.blockProcessed(
                at: UInt64(written * Self.block),
                outcome: .failed(.superseded, "stale"),
                now: 0
            )
            #expect(late == .none)
        }
        let resumedAt = UInt64(written * Self.block)
        var second = try Self.accepted(offset: resumedAt)
        for index in written..<4 {
            _ = Self.write(&second, at: UInt64(index * Self.block))
        }
        Self.finish(&second, size: 4 * 4096, resumedFrom: resumedAt)
    }

    // MARK: Bad blocks

    @Test func aBadChecksumIsNackedInFlightBlocksAreDroppedAndTheResentBlockIsAcked() throws {
        var machine = try Self.accepted()
        _ = Self.write(&machine, at: 0)
        // Blocks 1, 2, 3 are in flight; block 1 fails its CRC.
        for index in 1...3 {
            #expect(machine.blockReceived(offset: UInt64(index * 4096), rawLength: 4096) == .write(pauseReading: false))
        }
        _ = machine.blockDequeued()
        let reason = "checksum mismatch: block CRC-32 is 1, expected 2"
        let retry = Machine.Retry(upload: Self.id, name: "data.bin", offset: 4096, reason: reason, count: 1)
        #expect(machine.blockProcessed(at: 4096, outcome: .corrupt(reason: reason), now: 0) == .nack(retry))
        // The driver drops the blocks queued behind the bad one.
        for index in 2...3 {
            _ = machine.blockDequeued()
            #expect(machine.blockProcessed(at: UInt64(index * 4096), outcome: .dropped, now: 0) == .none)
        }
        // Blocks the client sent before it saw the nack are dropped until the failed one comes again.
        #expect(machine.blockReceived(offset: 3 * 4096, rawLength: 4096) == .drop)
        for index in 1...3 {
            #expect(
                Self.write(&machine, at: UInt64(index * 4096))
                    == .ack(offset: UInt64(index * 4096 + 4096), progress: nil)
            )
        }
        Self.finish(&machine, size: 4 * 4096, resumedFrom: 0)
    }

    @Test func aBlockFailingAFourthTimeGivesUpWithChecksumFailed() throws {
        var machine = try Self.accepted()
        for attempt in 1...4 {
            #expect(machine.blockReceived(offset: 0, rawLength: 4096) == .write(pauseReading: false))
            _ = machine.blockDequeued()
            let retry = Machine.Retry(upload: Self.id, name: "data.bin", offset: 0, reason: "bad", count: attempt)
            let action = machine.blockProcessed(at: 0, outcome: .corrupt(reason: "bad"), now: 0)
            if attempt < 4 {
                #expect(action == .nack(retry))
            } else {
                #expect(
                    action
                        == .giveUp(
                            retry,
                            .checksumFailed,
                            "block at offset 0 of data.bin failed verification 4 times (bad); the source may be changing or the network corrupts data"
                        )
                )
            }
        }
        #expect(machine.blockReceived(offset: 0, rawLength: 4096) == .drop)
        #expect(machine.connectionClosed() == .release)
    }

    /// A zlib block that inflates past its declared length: the driver's decode refuses it, the block is nacked.
    @Test func aBlockInflatingPastItsDeclaredSizeIsNacked() throws {
        let codec = BlockCodec(level: 6)
        let raw = [UInt8](repeating: 0x61, count: 8192)
        var payload = ByteBuffer()
        let encoding = raw.withUnsafeBytes { codec.encode($0, into: &payload) }
        #expect(encoding == .zlib)
        var out = ByteBuffer()
        var reason = ""
        do {
            try payload.withUnsafeReadableBytes { bytes throws(XferError) in
                try codec.decode(bytes, encoding: .zlib, rawLength: 4096, into: &out)
            }
        } catch {
            #expect(error.code == .corruptBlock)
            reason = error.message
        }
        #expect(!reason.isEmpty)
        var machine = try Self.accepted()
        #expect(machine.blockReceived(offset: 0, rawLength: 4096) == .write(pauseReading: false))
        _ = machine.blockDequeued()
        guard case .nack(let retry) = machine.blockProcessed(at: 0, outcome: .corrupt(reason: reason), now: 0) else {
            Issue.record("a block inflating past its size was not nacked")
            return
        }
        #expect(retry.reason == reason)
    }

    @Test func aBlockAtTheWrongOffsetFails() throws {
        var machine = try Self.accepted()
        #expect(
            machine.blockReceived(offset: 4096, rawLength: 4096)
                == .fail(.protocolError, "block at offset 4096 arrived, 0 was expected")
        )
        #expect(machine.connectionClosed() == .release)
    }

    @Test func aBlockLongerThanTheBlockSizeOrEmptyFails() throws {
        var machine = try Self.accepted()
        #expect(
            machine.blockReceived(offset: 0, rawLength: 4097)
                == .fail(.protocolError, "block at 0 declares 4097 bytes; blocks are at most 4096")
        )
        var empty = try Self.accepted()
        #expect(
            empty.blockReceived(offset: 0, rawLength: 0)
                == .fail(.protocolError, "block at 0 declares 0 bytes; blocks are at most 4096")
        )
    }

    @Test func aBlockPastTheDeclaredSizeFails() throws {
        var machine = try Self.accepted(size: 6000)
        _ = Self.write(&machine, at: 0)
        #expect(
            machine.blockReceived(offset: 4096, rawLength: 4096)
                == .fail(.protocolError, "block at 4096 goes past the declared size of 6000 bytes")
        )
    }

    @Test func aStreamPastTheServersLimitIsFileTooLarge() throws {
        let limits = Machine.Limits(maxFileSize: 3 * 4096)
        var machine = try Self.accepted(size: nil, limits: limits)
        for index in 0..<3 {
            _ = Self.write(&machine, at: UInt64(index * 4096))
        }
        #expect(
            machine.blockReceived(offset: 3 * 4096, rawLength: 4096)
                == .fail(.fileTooLarge, "data.bin grew past the server's limit of 12288 bytes (--max-file-size)")
        )
    }

    // MARK: Storage failures and takeover

    /// The disk fills up: the upload fails with `disk_full`; the verified part stays and a later run resumes.
    @Test func aFullDiskFailsTheUploadAndTheNextConnectionResumesTheVerifiedPart() throws {
        var machine = try Self.accepted()
        _ = Self.write(&machine, at: 0)
        #expect(machine.blockReceived(offset: 4096, rawLength: 4096) == .write(pauseReading: false))
        _ = machine.blockDequeued()
        let message = "cannot write data.bin: No space left on device"
        #expect(
            machine.blockProcessed(at: 4096, outcome: .failed(.diskFull, message), now: 0) == .fail(.diskFull, message)
        )
        #expect(machine.connectionClosed() == .release)
        var resumed = try Self.accepted(offset: 4096)
        for index in 1..<4 {
            _ = Self.write(&resumed, at: UInt64(index * 4096))
        }
        Self.finish(&resumed, size: 4 * 4096, resumedFrom: 4096)
    }

    /// A newer connection took the upload over: the store refuses this one's late writes with `superseded`.
    @Test func aSupersededHoldersLateWriteFailsItAndTheNewHolderResumes() throws {
        var old = try Self.accepted()
        _ = Self.write(&old, at: 0)
        #expect(old.blockReceived(offset: 4096, rawLength: 4096) == .write(pauseReading: false))
        _ = old.blockDequeued()
        let message = "a newer connection took the upload of data.bin over"
        #expect(
            old.blockProcessed(at: 4096, outcome: .failed(.superseded, message), now: 0) == .fail(.superseded, message)
        )
        #expect(old.connectionClosed() == .release)
        var new = try Self.accepted(offset: 4096)
        for index in 1..<4 {
            _ = Self.write(&new, at: UInt64(index * 4096))
        }
        Self.finish(&new, size: 4 * 4096, resumedFrom: 4096)
    }

    // MARK: Finish

    @Test func aFinishWithAnotherSizeIsAnIntegrityFailure() throws {
        var machine = try Self.accepted()
        _ = Self.write(&machine, at: 0)
        #expect(
            machine.finishReceived(size: 4 * 4096, sha256: [])
                == .fail(.integrityFailed, "finish says 16384 bytes but 4096 were sent")
        )
        #expect(machine.connectionClosed() == .release)
    }

    @Test func aFinishWhileABlockIsBeingResentFails() throws {
        var machine = try Self.accepted(size: 4096)
        #expect(machine.blockReceived(offset: 0, rawLength: 4096) == .write(pauseReading: false))
        _ = machine.blockDequeued()
        _ = machine.blockProcessed(at: 0, outcome: .corrupt(reason: "bad"), now: 0)
        #expect(
            machine.finishReceived(size: 0, sha256: [])
                == .fail(.protocolError, "finish arrived while block 0 was still being resent")
        )
    }

    @Test func aDigestMismatchDiscardsThePartialUpload() throws {
        var machine = try Self.accepted(size: 4096)
        _ = Self.write(&machine, at: 0)
        let client = [UInt8](repeating: 0xAB, count: 32)
        #expect(machine.finishReceived(size: 4096, sha256: client) == .computeDigest)
        let server = [UInt8](repeating: 0xCD, count: 32)
        let action = machine.verified(digest: server, verifiedBytes: 4096)
        #expect(
            action
                == .discardAndFail(
                    .integrityFailed,
                    "data.bin: SHA-256 of the 4096 bytes received is \(String(repeating: "cd", count: 32)), the client computed \(String(repeating: "ab", count: 32)); the partial upload was discarded (did the source change?)"
                )
        )
        #expect(machine.connectionClosed() == .release)
    }

    @Test func fewerVerifiedBytesThanFinishedIsAlsoDiscarded() throws {
        var machine = try Self.accepted(size: 4096)
        _ = Self.write(&machine, at: 0)
        let sha = [UInt8](repeating: 1, count: 32)
        _ = machine.finishReceived(size: 4096, sha256: sha)
        guard case .discardAndFail(let code, _) = machine.verified(digest: sha, verifiedBytes: 0) else {
            Issue.record("a short upload was committed")
            return
        }
        #expect(code == .integrityFailed)
    }

    @Test func aFailedCommitFailsTheUpload() throws {
        var machine = try Self.accepted(size: 4096)
        _ = Self.write(&machine, at: 0)
        let sha = [UInt8](repeating: 1, count: 32)
        _ = machine.finishReceived(size: 4096, sha256: sha)
        #expect(machine.verified(digest: sha, verifiedBytes: 4096) == .commit)
        #expect(machine.commitFailed(.storageFailed, "cannot save") == .fail(.storageFailed, "cannot save"))
        #expect(machine.connectionClosed() == .release)
    }

    /// A machine whose upload of one block passed its digest check: the store is committing it.
    static func committing() throws -> Machine {
        var machine = try Self.accepted(size: 4096)
        _ = Self.write(&machine, at: 0)
        let sha = [UInt8](repeating: 7, count: 32)
        _ = machine.finishReceived(size: 4096, sha256: sha)
        #expect(machine.verified(digest: sha, verifiedBytes: 4096) == .commit)
        return machine
    }

    /// What `committed` reports for the upload of `committing()`.
    static let savedOneBlock = (
        Machine.Saved(
            upload: id,
            name: "data.bin",
            path: "/srv/data.bin",
            bytes: 4096,
            sha256: [UInt8](repeating: 7, count: 32),
            resumedFrom: 0
        ),
        Machine.Progress(upload: id, name: "data.bin", bytes: 4096, total: 4096)
    )

    /// The client vanishes while the store flushes and links the file: the file is in the directory, so it is
    /// still reported (`file_saved`, without a `saved` to a gone client); the claim is released behind the commit.
    @Test func aConnectionClosedDuringTheCommitStillReportsTheSavedFile() throws {
        var machine = try Self.committing()
        #expect(machine.connectionClosed() == .release)
        let (saved, progress) = Self.savedOneBlock
        #expect(
            machine.committed(name: "data.bin", path: "/srv/data.bin") == .savedDetached(saved, progress: progress)
        )
        #expect(machine.connectionClosed() == .none)
        #expect(machine.blockReceived(offset: 4096, rawLength: 4096) == .drop)
    }

    /// A client that sends another finish or an offer during the commit fails, but the file it saved is reported,
    /// and the claim is released once, when the connection closes.
    @Test func aBadMessageDuringTheCommitStillReportsTheSavedFile() throws {
        let (saved, progress) = Self.savedOneBlock
        var finishAgain = try Self.committing()
        #expect(
            finishAgain.finishReceived(size: 4096, sha256: [])
                == .fail(.protocolError, "unexpected finish message during an upload")
        )
        #expect(
            finishAgain.committed(name: "data.bin", path: "/srv/data.bin") == .savedDetached(saved, progress: progress)
        )
        #expect(finishAgain.connectionClosed() == .release)

        var offerAgain = try Self.committing()
        #expect(
            offerAgain.offerReceived(Self.fields())
                == .fail(.protocolError, "unexpected offer message during an upload")
        )
        #expect(offerAgain.connectionClosed() == .release)
        #expect(offerAgain.connectionClosed() == .none)
        #expect(
            offerAgain.committed(name: "data.bin", path: "/srv/data.bin") == .savedDetached(saved, progress: progress)
        )
        #expect(offerAgain.connectionClosed() == .none)
    }

    /// A commit that fails after the client left reports nothing (nobody to tell); the partial stays for a resume.
    @Test func aCommitFailingAfterTheCloseReportsNothing() throws {
        var machine = try Self.committing()
        #expect(machine.connectionClosed() == .release)
        #expect(machine.commitFailed(.diskFull, "no space") == .none)
        #expect(machine.connectionClosed() == .none)
    }

    /// Any other message type inside an upload (a text, a ping-like control) fails it with `protocol_error`.
    @Test func anUnexpectedMessageFailsTheUpload() throws {
        var machine = try Self.accepted()
        #expect(machine.unexpectedMessage("text") == .fail(.protocolError, "unexpected text message during an upload"))
        #expect(machine.blockReceived(offset: 0, rawLength: 4096) == .drop)
        #expect(machine.connectionClosed() == .release)

        var committing = try Self.committing()
        _ = committing.unexpectedMessage("text")
        guard case .savedDetached = committing.committed(name: "data.bin", path: "/srv/data.bin") else {
            Issue.record("a file saved after an unexpected message was not reported")
            return
        }
    }

    @Test func aConnectionClosedWhileVerifyingIgnoresTheDigest() throws {
        var machine = try Self.accepted(size: 4096)
        _ = Self.write(&machine, at: 0)
        _ = machine.finishReceived(size: 4096, sha256: [])
        #expect(machine.connectionClosed() == .release)
        #expect(machine.verified(digest: [], verifiedBytes: 4096) == .none)
    }

    /// A hostile client sends more messages while the server verifies and commits: they fail the upload, and the
    /// store's late answers are ignored instead of tripping the machine.
    @Test func messagesDuringVerifyOrCommitFailTheUploadAndLateAnswersAreIgnored() throws {
        var verifying = try Self.accepted(size: 4096)
        _ = Self.write(&verifying, at: 0)
        _ = verifying.finishReceived(size: 4096, sha256: [])
        #expect(
            verifying.offerReceived(Self.fields()) == .fail(.protocolError, "unexpected offer message during an upload")
        )
        #expect(verifying.verified(digest: [], verifiedBytes: 4096) == .none)
        #expect(verifying.connectionClosed() == .release)

        var committing = try Self.accepted(size: 4096)
        _ = Self.write(&committing, at: 0)
        _ = committing.finishReceived(size: 4096, sha256: [])
        #expect(committing.verified(digest: [], verifiedBytes: 4096) == .commit)
        #expect(
            committing.finishReceived(size: 4096, sha256: [])
                == .fail(.protocolError, "unexpected finish message during an upload")
        )
        guard case .savedDetached = committing.committed(name: "data.bin", path: "/srv/data.bin") else {
            Issue.record("a file saved after a bad message was not reported")
            return
        }
        #expect(committing.commitFailed(.storageFailed, "late") == .none)
        #expect(committing.connectionClosed() == .release)
    }

    // MARK: Back-pressure and progress

    @Test func readingPausesAtEightQueuedBlocksAndResumesAtFour() throws {
        var machine = try Self.accepted(size: 16 * 4096)
        for index in 0..<8 {
            let action = machine.blockReceived(offset: UInt64(index * 4096), rawLength: 4096)
            #expect(action == .write(pauseReading: index == 7))
        }
        var resumedAfter: Int?
        for index in 0..<8 {
            if machine.blockDequeued() == .resumeReading {
                #expect(resumedAfter == nil)
                resumedAfter = index + 1
            }
        }
        #expect(resumedAfter == 4)
    }

    @Test func progressIsReportedAtMostFourTimesASecond() throws {
        var machine = try Self.accepted(size: 8 * 4096)
        let at = { (bytes: UInt64) in
            Machine.Progress(upload: Self.id, name: "data.bin", bytes: bytes, total: 8 * 4096)
        }
        #expect(Self.write(&machine, at: 0, now: Self.second / 10) == .ack(offset: 4096, progress: nil))
        #expect(Self.write(&machine, at: 4096, now: Self.second / 4) == .ack(offset: 8192, progress: at(8192)))
        #expect(Self.write(&machine, at: 8192, now: Self.second / 4 + 1) == .ack(offset: 12288, progress: nil))
        #expect(Self.write(&machine, at: 12288, now: Self.second) == .ack(offset: 16384, progress: at(16384)))
    }
}
