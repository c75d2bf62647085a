import Testing
import XferProtocol

/// Drives the client side of uploads without sockets through every path the fault tests cover: cuts at any
/// block, resumes inside, before and after the retained blocks, bad checksums, changed sources, server errors,
/// hostile accepts and acknowledgements, and the digest check at the end.
@Suite struct UploadSenderStateMachineTests {
    /// A driver without buffers or queues: it mirrors the machine's blocks as offsets and lengths, completes
    /// reads when told to, and records what went out on the current connection.
    struct Harness {
        var machine: UploadSenderStateMachine
        /// Bytes in the source.
        let length: UInt64
        let blockSize: Int
        let isSeekable: Bool
        var ready: [UInt64: Int] = [:]
        var inFlight: [UInt64] = []
        var reads: [(offset: UInt64, expected: Int?, generation: Int)] = []
        /// Offsets of the blocks sent on the current connection, in order.
        var wire: [UInt64] = []
        var finish: (size: UInt64, sha256: [UInt8])?
        var digestsAskedFor = 0
        var now: UInt64 = 1_000_000_000

        init(length: UInt64, blockSize: Int = 4, window: Int = 3, stream: Bool = false) {
            self.length = length
            self.blockSize = blockSize
            self.isSeekable = !stream
            self.machine = UploadSenderStateMachine(
                blockSize: blockSize,
                window: window,
                isSeekable: !stream,
                size: stream ? nil : length
            )
        }

        /// Reads up to the window and sends what is ready, as `UploadJob.pump` does.
        mutating func pump(canWrite: Bool = true) {
            while case .read(let offset, let expected, let generation) = self.machine.nextRead() {
                self.reads.append((offset, expected, generation))
            }
            sending: while true {
                switch self.machine.nextSend(canWrite: canWrite) {
                case .send(let offset):
                    #expect(self.ready.removeValue(forKey: offset) != nil, "block \(offset) sent but not ready")
                    self.inFlight.append(offset)
                    self.wire.append(offset)
                case .computeDigest:
                    self.digestsAskedFor += 1
                    break sending
                case .finish(let size, let sha256):
                    self.finish = (size, sha256)
                    break sending
                case .idle:
                    break sending
                }
            }
        }

        /// Completes the oldest outstanding reads (all when `count` is nil), each as the source has it.
        mutating func completeReads(_ count: Int? = nil, stale: Bool = false) {
            var done = 0
            while !self.reads.isEmpty && done < (count ?? .max) {
                let read = self.reads.removeFirst()
                done += 1
                let length = read.offset < self.length ? Int(min(UInt64(self.blockSize), self.length - read.offset)) : 0
                if let expected = read.expected { #expect(expected == length) }
                if !self.isSeekable && length < self.blockSize {
                    _ = self.machine.streamEnded(at: read.offset + UInt64(length))
                }
                let action = self.machine.blockPrepared(
                    offset: read.offset,
                    length: stale ? 0 : length,
                    generation: read.generation
                )
                if action == .store { self.ready[read.offset] = length }
                self.pump()
            }
        }

        /// A new connection: the offer goes out.
        mutating func connect() {
            guard case .sendOffer = self.machine.connected() else {
                Issue.record("a new connection should send the offer")
                return
            }
            self.wire = []
        }

        /// A connection the server accepts at 0: a fresh upload.
        mutating func start() {
            self.connect()
            self.accept(0)
        }

        /// The connection ends and a new one offers the upload again.
        mutating func reconnect() {
            self.machine.disconnected()
            self.connect()
        }

        /// Reads, sends and delivers `count` blocks one at a time, `server` acknowledging each or not.
        mutating func deliver(_ count: Int, to server: inout Server, acknowledge: Bool = true) {
            for _ in 0..<count {
                self.completeReads(1)
                server.receive(&self, blocks: 1, acknowledge: acknowledge)
            }
        }

        /// The server accepts at `offset`; mirrors the blocks as the driver does.
        @discardableResult
        mutating func accept(_ offset: UInt64) -> UploadSenderStateMachine.AcceptAction {
            self.now += 1
            let action = self.machine.accepted(offset: offset, now: self.now)
            switch action {
            case .resume(let releasing, _):
                for offset in self.inFlight[releasing...] { self.ready[offset] = self.length(of: offset) }
                self.inFlight.removeAll()
            case .restart:
                self.ready.removeAll()
                self.inFlight.removeAll()
            case .fail, .ignore:
                return action
            }
            self.pump()
            return action
        }

        /// The server acknowledges everything before `offset`.
        @discardableResult
        mutating func ack(_ offset: UInt64, after nanoseconds: UInt64 = 1) -> UploadSenderStateMachine.AckAction {
            self.now += nanoseconds
            let action = self.machine.acknowledged(upTo: offset, now: self.now)
            if case .release(let count, _) = action {
                self.inFlight.removeFirst(count)
                self.pump()
            }
            return action
        }

        /// The server rejects the block at `offset`.
        mutating func nack(_ offset: UInt64) -> UploadSenderStateMachine.NackAction {
            let action = self.machine.rejected(at: offset)
            if case .resend(let index, _, _) = action {
                for offset in self.inFlight[index...] { self.ready[offset] = self.length(of: offset) }
                self.inFlight.removeSubrange(index...)
                self.pump()
            }
            return action
        }

        func length(of offset: UInt64) -> Int { Int(min(UInt64(self.blockSize), self.length - offset)) }
    }

    /// A server without storage: it takes blocks in order, acknowledges each, and keeps what it verified across
    /// connections as the upload store does.
    struct Server {
        var verified: UInt64 = 0

        /// Receives the first `count` blocks on the harness's wire (all when nil), acknowledging each one.
        mutating func receive(_ harness: inout Harness, blocks count: Int? = nil, acknowledge: Bool = true) {
            var taken = 0
            while taken < (count ?? .max), let offset = harness.wire.first {
                harness.wire.removeFirst()
                taken += 1
                if offset == self.verified { self.verified += UInt64(harness.length(of: offset)) }
                if acknowledge { harness.ack(self.verified) }
            }
        }
    }

    static let digest: [UInt8] = Array(repeating: 7, count: 32)

    /// Runs the harness to the end against `server` and checks the server saved every byte.
    static func finishUpload(_ harness: inout Harness, _ server: inout Server) {
        for _ in 0..<10_000 where harness.finish == nil {
            harness.completeReads()
            server.receive(&harness)
            if harness.digestsAskedFor > 0, harness.machine.sha256 == nil {
                if case .finish(let size, let sha256) = harness.machine.digestComputed(Self.digest) {
                    harness.finish = (size, sha256)
                }
            }
        }
        #expect(server.verified == harness.length)
        #expect(harness.finish?.size == harness.length)
        #expect(harness.finish?.sha256 == Self.digest)
        guard case .done(let progress) = harness.machine.saved(size: harness.length, sha256: Self.digest, name: "f")
        else {
            Issue.record("a matching digest should save the upload")
            return
        }
        #expect(progress == harness.length)
        #expect(harness.machine.savedName == "f")
    }

    @Test func aFreshUploadOffersReadsWithinTheWindowAndSendsInOrder() {
        var harness = Harness(length: 10)
        harness.connect()
        harness.pump()
        #expect(harness.wire.isEmpty, "nothing is sent before the server accepts")
        guard case .resume(releasing: 0, progress: 0) = harness.accept(0) else {
            Issue.record("a fresh accept resumes at 0")
            return
        }
        #expect(harness.reads.map(\.offset) == [0, 4, 8])
        #expect(harness.reads.map(\.expected) == [4, 4, 2])
        var server = Server()
        Self.finishUpload(&harness, &server)
        #expect(harness.digestsAskedFor == 1)
        #expect(harness.machine.resumedFrom == 0)
    }

    @Test func theWindowBoundsBlocksPreparingReadyAndInFlight() {
        var harness = Harness(length: 100, window: 3)
        harness.start()
        #expect(harness.reads.count == 3)
        harness.completeReads()
        #expect(harness.inFlight.count == 3)
        #expect(harness.reads.isEmpty, "three blocks in flight fill a window of three")
        harness.ack(4)
        #expect(harness.inFlight.count == 2)
        #expect(harness.reads.map(\.offset) == [12])
    }

    @Test func blocksPreparedOutOfOrderAreSentInOrder() {
        var harness = Harness(length: 12, window: 3)
        harness.start()
        // The encoders finish the third block first, then the second: nothing goes out before the first.
        let reads = harness.reads
        harness.reads = []
        for index in [2, 1] {
            let read = reads[index]
            #expect(
                harness.machine.blockPrepared(offset: read.offset, length: 4, generation: read.generation) == .store
            )
            harness.ready[read.offset] = 4
            harness.pump()
        }
        #expect(harness.wire.isEmpty)
        #expect(harness.machine.blockPrepared(offset: 0, length: 4, generation: reads[0].generation) == .store)
        harness.ready[0] = 4
        harness.pump()
        #expect(harness.wire == [0, 4, 8])
    }

    @Test func aBlockedConnectionSendsNothingUntilWritable() {
        var harness = Harness(length: 12)
        harness.start()
        harness.reads.removeAll()
        for offset: UInt64 in [0, 4, 8] {
            _ = harness.machine.blockPrepared(offset: offset, length: 4, generation: 0)
            harness.ready[offset] = 4
        }
        harness.pump(canWrite: false)
        #expect(harness.wire.isEmpty)
        harness.pump()
        #expect(harness.wire == [0, 4, 8])
    }

    @Test func acknowledgementsReleaseBlocksAndProgressIsThrottled() {
        var harness = Harness(length: 40, window: 8)
        harness.start()
        harness.completeReads()
        guard case .release(count: 1, progress: nil) = harness.ack(4, after: 1_000) else {
            Issue.record("an acknowledgement right after the accept releases without a progress report")
            return
        }
        guard case .release(count: 2, progress: 12) = harness.ack(12, after: 300_000_000) else {
            Issue.record("an acknowledgement 300 ms later releases two blocks and reports progress")
            return
        }
        guard case .release(count: 0, progress: nil) = harness.ack(14, after: 1_000) else {
            Issue.record("half a block acknowledged releases nothing")
            return
        }
        #expect(harness.machine.acknowledgedBytes == 14)
    }

    @Test func oldAcknowledgementsAreIgnoredAndOnesBeyondWhatWasSentFail() {
        var harness = Harness(length: 40)
        harness.connect()
        guard case .fail(let early) = harness.ack(4) else {
            Issue.record("an acknowledgement before the accept is a protocol error")
            return
        }
        #expect(early.code == .protocolError)
        harness.accept(0)
        harness.completeReads()
        harness.ack(8)
        guard case .ignore = harness.ack(4) else {
            Issue.record("an old acknowledgement is ignored")
            return
        }
        guard case .fail(let error) = harness.ack(100) else {
            Issue.record("an acknowledgement of bytes never sent fails")
            return
        }
        #expect(error.code == .protocolError)
        #expect(error.message.contains("only 12 were sent"))
    }

    @Test func aRejectedBlockIsResentWithWhatFollowedIt() {
        var harness = Harness(length: 20, window: 4)
        harness.start()
        harness.completeReads()
        #expect(harness.wire == [0, 4, 8, 12])
        harness.ack(4)
        #expect(harness.nack(4) == .resend(index: 0, offset: 4, retry: 1))
        #expect(harness.wire == [0, 4, 8, 12, 4, 8, 12])
        #expect(harness.nack(8) == .resend(index: 1, offset: 8, retry: 2))
        #expect(harness.nack(0) == .ignore, "a block no longer in flight is not resent")
        var server = Server()
        harness.wire = [4, 8, 12]
        server.verified = 4
        Self.finishUpload(&harness, &server)
    }

    @Test func aCutAtAnyBlockResumesAFileFromWhatTheServerHas() {
        for cut in 0...6 {
            for acknowledged in [false, true] {
                var harness = Harness(length: 22, window: 3)
                var server = Server()
                harness.start()
                // Acknowledgements lost in the cut leave the server ahead of what the client knows.
                harness.deliver(cut, to: &server, acknowledge: acknowledged)
                harness.reconnect()
                let resumed = server.verified
                guard case .resume(releasing: _, progress: resumed) = harness.accept(resumed) else {
                    Issue.record("cut \(cut): \(resumed) lies in the retained blocks")
                    continue
                }
                #expect(harness.machine.resumedFrom == resumed)
                Self.finishUpload(&harness, &server)
                #expect(harness.machine.resumedFrom == resumed)
            }
        }
    }

    @Test func aCutStreamResumesFromTheRetainedBlocks() {
        for cut in 0...6 {
            var harness = Harness(length: 22, window: 8, stream: true)
            var server = Server()
            harness.start()
            harness.deliver(cut, to: &server, acknowledge: false)
            harness.reconnect()
            guard case .resume(releasing: let releasing, progress: server.verified) = harness.accept(server.verified)
            else {
                Issue.record("cut \(cut): a stream resumes from its retained blocks")
                continue
            }
            #expect(releasing == min(cut, 6))
            Self.finishUpload(&harness, &server)
            #expect(harness.machine.total == 22)
        }
    }

    @Test func aStreamResumedBeforeItsRetainedBlocksFailsForGood() {
        var harness = Harness(length: 40, window: 2, stream: true)
        var server = Server()
        harness.start()
        harness.deliver(4, to: &server)
        harness.reconnect()
        // The server lost its partial: it wants the stream from the start, long gone from memory.
        guard case .fail(let error) = harness.accept(0) else {
            Issue.record("a stream cannot go back before its replay window")
            return
        }
        #expect(error.code == .replayWindowExceeded)
        #expect(harness.machine.failure?.code == .replayWindowExceeded)
        #expect(harness.machine.nextRead() == .idle)
        harness.machine.disconnected()
        guard case .fail(let again) = harness.machine.connected() else {
            Issue.record("a failed upload ends the next connection at once")
            return
        }
        #expect(again.code == .replayWindowExceeded)
    }

    @Test func aStreamResumedAfterWhatItSentIsAProtocolError() {
        var harness = Harness(length: 40, window: 2, stream: true)
        harness.start()
        harness.completeReads(1)
        harness.reconnect()
        guard case .fail(let error) = harness.accept(16) else {
            Issue.record("a server cannot have bytes of a stream that were never sent")
            return
        }
        #expect(error.code == .protocolError)
        #expect(harness.machine.failure == nil, "a protocol error ends the connection, not the upload")
    }

    @Test func aFileResumedBeforeOrAfterItsRetainedBlocksIsReadAgainFromThere() {
        for offset: UInt64 in [0, 8, 32] {
            var harness = Harness(length: 40, window: 2)
            var server = Server()
            harness.start()
            harness.deliver(4, to: &server)
            // Reads still outstanding from before the jump.
            harness.pump()
            let stale = harness.reads
            #expect(!stale.isEmpty)
            harness.reconnect()
            guard case .restart(at: offset, generation: 1) = harness.accept(offset) else {
                Issue.record("a file re-reads from \(offset)")
                continue
            }
            #expect(harness.reads.count == stale.count, "the stale reads still count against the window")
            harness.completeReads()
            #expect(harness.wire.first == offset, "a stale block is discarded, the read goes on from \(offset)")
            server.verified = offset
            Self.finishUpload(&harness, &server)
            #expect(harness.machine.resumedFrom == offset)
        }
    }

    @Test func aStaleBlockFromBeforeAJumpIsDiscarded() {
        var harness = Harness(length: 40, window: 2)
        harness.start()
        let stale = harness.reads
        harness.reconnect()
        harness.reads = []
        harness.accept(16)
        #expect(harness.machine.blockPrepared(offset: stale[0].offset, length: 4, generation: 0) == .discard)
        #expect(harness.machine.blockPrepared(offset: stale[1].offset, length: 4, generation: 0) == .discard)
        harness.pump()
        #expect(harness.reads.map(\.offset) == [16, 20])
        #expect(harness.reads.allSatisfy { $0.generation == 1 })
    }

    @Test func hostileAcceptsFailTheConnection() {
        for (offset, words) in [(UInt64(44), "past the end"), (6, "not a block boundary")] {
            var harness = Harness(length: 40)
            harness.connect()
            guard case .fail(let error) = harness.accept(offset) else {
                Issue.record("accept at \(offset) should fail")
                continue
            }
            #expect(error.code == .protocolError)
            #expect(error.message.contains(words))
        }
        var harness = Harness(length: 42)
        harness.connect()
        guard case .restart(at: 42, generation: 1) = harness.accept(42) else {
            Issue.record("the end of a file is a valid resume offset, on the grid or not")
            return
        }
        guard case .fail(let twice) = harness.accept(0) else {
            Issue.record("a second accept on one connection fails")
            return
        }
        #expect(twice.message.contains("twice"))
        harness.machine.disconnected()
        guard case .ignore = harness.machine.accepted(offset: 0, now: 0) else {
            Issue.record("an accept with no connection is a race, ignored")
            return
        }
    }

    @Test func aFileResumedAtItsEndFinishesWithoutSendingBlocks() {
        var harness = Harness(length: 10)
        harness.connect()
        harness.accept(10)
        #expect(harness.reads.isEmpty)
        #expect(harness.wire.isEmpty)
        #expect(harness.digestsAskedFor == 1)
        #expect(harness.machine.digestComputed(Self.digest) == .finish(size: 10, sha256: Self.digest))
        #expect(harness.machine.resumedFrom == 10)
    }

    @Test func aStreamEndsAtItsFirstShortRead() {
        var harness = Harness(length: 9, window: 4, stream: true)
        harness.start()
        #expect(harness.reads.map(\.expected) == [nil, nil, nil, nil])
        #expect(harness.machine.streamEnded(at: 9) == .totalKnown(9))
        #expect(harness.machine.streamEnded(at: 12) == .idle, "a later empty read does not move the end")
        harness.reads.removeLast()
        #expect(harness.machine.blockPrepared(offset: 12, length: 0, generation: 0) == .discard)
        var server = Server()
        Self.finishUpload(&harness, &server)
    }

    @Test func anEmptyStreamFinishesWithZeroBytes() {
        var harness = Harness(length: 0, stream: true)
        var server = Server()
        harness.start()
        Self.finishUpload(&harness, &server)
    }

    @Test func aChangedSourceFailsTheUploadForGood() {
        var harness = Harness(length: 40)
        harness.start()
        harness.reads.removeFirst()
        guard case .fail(let error) = harness.machine.readFailed(XferError(.inputUnreadable, "f changed")) else {
            Issue.record("a failed read fails the upload")
            return
        }
        #expect(error.code == .inputUnreadable)
        #expect(harness.machine.failure?.code == .inputUnreadable)
        #expect(harness.machine.nextRead() == .idle)
        #expect(harness.machine.nextSend(canWrite: true) == .idle)
        harness.reads.removeFirst()
        guard case .idle = harness.machine.readFailed(XferError(.inputUnreadable, "again")) else {
            Issue.record("a second failure changes nothing")
            return
        }
        #expect(harness.machine.failure?.message == "f changed")
    }

    @Test func aServerErrorEndsTheConnectionButKeepsTheBlocksForTheNextOne() {
        // Takeover (`superseded`) and a full disk arrive as an `error` and a close: the connection ends, the
        // upload keeps its place, and whether to reconnect is the command's choice.
        var harness = Harness(length: 40, window: 4)
        var server = Server()
        harness.start()
        harness.completeReads()
        server.receive(&harness, blocks: 2)
        harness.machine.disconnected()
        #expect(harness.machine.failure == nil)
        #expect(harness.machine.acknowledgedBytes == 8)
        harness.pump()
        #expect(harness.wire.count == 2, "nothing is sent without a connection")
        guard case .ignore = harness.ack(12) else {
            Issue.record("a late acknowledgement after the connection ended is ignored")
            return
        }
        harness.connect()
        guard case .resume(releasing: 0, progress: 8) = harness.accept(8) else {
            Issue.record("the next connection resumes from the acknowledged bytes")
            return
        }
        #expect(harness.wire == [8, 12])
        Self.finishUpload(&harness, &server)
        #expect(harness.machine.resumedFrom == 8)
    }

    @Test func resumedFromIsWhereTheLatestAcceptedConnectionResumed() {
        var harness = Harness(length: 40, window: 4)
        var server = Server()
        #expect(harness.machine.resumedFrom == nil)
        harness.start()
        #expect(harness.machine.resumedFrom == 0)
        harness.completeReads()
        server.receive(&harness, blocks: 3)
        harness.reconnect()
        harness.accept(server.verified)
        #expect(harness.machine.resumedFrom == 12, "the server's file_saved reports the finishing connection's 12")
        Self.finishUpload(&harness, &server)
        #expect(harness.machine.resumedFrom == 12)
    }

    @Test func theDigestIsComputedOnceEvenAcrossAReconnect() {
        var harness = Harness(length: 8)
        var server = Server()
        harness.start()
        harness.completeReads()
        server.receive(&harness)
        #expect(harness.digestsAskedFor == 1)
        harness.machine.disconnected()
        #expect(harness.machine.digestComputed(Self.digest) == .idle, "no connection waits for the finish")
        harness.connect()
        harness.accept(8)
        #expect(harness.digestsAskedFor == 1)
        #expect(harness.finish?.sha256 == Self.digest)
    }

    @Test func aReconnectWhileTheDigestIsComputedSendsOneFinish() {
        var harness = Harness(length: 8)
        var server = Server()
        harness.start()
        harness.completeReads()
        server.receive(&harness)
        harness.reconnect()
        harness.accept(8)
        #expect(harness.digestsAskedFor == 1)
        #expect(harness.finish == nil)
        #expect(harness.machine.digestComputed(Self.digest) == .finish(size: 8, sha256: Self.digest))
    }

    @Test func theFinishWaitsForBlocksStillBeingPrepared() {
        var other = Harness(length: 40, window: 2)
        var server = Server()
        other.start()
        other.reconnect()
        other.accept(40)
        #expect(other.digestsAskedFor == 0, "two stale reads are still out")
        other.completeReads()
        #expect(other.digestsAskedFor == 1)
        server.verified = 40
        Self.finishUpload(&other, &server)
    }

    @Test func aSavedUploadWithAnotherDigestOrSizeFailsItsIntegrity() {
        for (size, sha256) in [(UInt64(8), [UInt8](repeating: 1, count: 32)), (9, Self.digest)] {
            var harness = Harness(length: 8)
            var server = Server()
            harness.start()
            harness.completeReads()
            server.receive(&harness)
            _ = harness.machine.digestComputed(Self.digest)
            guard case .fail(let error) = harness.machine.saved(size: size, sha256: sha256, name: "f") else {
                Issue.record("saved \(size) bytes with another digest must fail")
                continue
            }
            #expect(error.code == .integrityFailed)
            #expect(error.message.contains("0707070707"))
            #expect(harness.machine.failure?.code == .integrityFailed)
            #expect(harness.machine.savedName == nil)
        }
    }

    @Test func aSaveBeforeTheFinishIsAProtocolError() {
        var harness = Harness(length: 8)
        harness.start()
        guard case .fail(let error) = harness.machine.saved(size: 8, sha256: Self.digest, name: "f") else {
            Issue.record("saved before finish must fail")
            return
        }
        #expect(error.code == .protocolError)
        #expect(harness.machine.failure == nil)
    }

    @Test func aSessionEndLeavesTheUploadSavedFailedForGoodOrWorthAnotherSession() {
        var harness = Harness(length: 8)
        var server = Server()
        harness.start()
        let lost = XferError(.connectionLost, "cut")
        guard
            case .unfinished(let error, afterWelcome: true) = harness.machine.sessionEnded(
                failure: lost,
                afterWelcome: true,
                name: "f"
            )
        else {
            Issue.record("a cut upload is worth another session")
            return
        }
        #expect(error.message == "cut")
        // A normal close before `saved`: the server did not save it.
        guard
            case .unfinished(let closed, afterWelcome: false) = harness.machine.sessionEnded(
                failure: nil,
                afterWelcome: true,
                name: "f"
            )
        else {
            Issue.record("a close before saved is worth another session")
            return
        }
        #expect(closed.code == .connectionLost)
        #expect(closed.message.contains("f before saving it"))
        Self.finishUpload(&harness, &server)
        guard case .saved(name: "f") = harness.machine.sessionEnded(failure: nil, afterWelcome: true, name: "f") else {
            Issue.record("a saved upload is done")
            return
        }

        var changed = Harness(length: 40)
        changed.start()
        _ = changed.machine.readFailed(XferError(.inputUnreadable, "f changed"))
        guard case .fatal(let fatal) = changed.machine.sessionEnded(failure: lost, afterWelcome: true, name: "f") else {
            Issue.record("a changed source is not worth another session")
            return
        }
        #expect(fatal.code == .inputUnreadable)
    }
}
