import Dispatch
import Foundation
import Synchronization
import Testing
import XferProtocol

@testable import XferClientSide
@testable import XferServerSide
@testable import XferTransport

/// The contract every `UploadStore` keeps, run against each implementation (`UploadStoreKind`): resume after a
/// torn write, commit without replacing, claims that a newer connection takes over, stale holders refused, one
/// writer per upload across stores on one backing, and the sweep of idle partials.
@Suite struct UploadStoreContractTests {
    static let blockSize = 4096

    static func offer(id: String = "0123456789abcdef0123456789abcdef", size: UInt64? = 4 * 4096) -> UploadOffer {
        UploadOffer(id: id, name: "data.bin", size: size, blockSize: Self.blockSize, mtime: "1", kind: .file)
    }

    static func block(_ value: UInt8) -> [UInt8] {
        [UInt8](repeating: value, count: Self.blockSize)
    }

    /// Counts the times a holder was asked to let go, and whether its claim is ready.
    final class Holder: Sendable {
        let releaseRequests = Atomic<Int>(0)
        let ready = Atomic<Bool>(false)

        func claim(_ id: String, in store: any UploadStore) -> UploadClaim {
            store.claim(
                id,
                requestRelease: { self.releaseRequests.add(1, ordering: .relaxed) },
                whenReady: { self.ready.store(true, ordering: .relaxed) }
            )
        }

        var isReady: Bool { self.ready.load(ordering: .relaxed) }
        var wasAskedToLetGo: Bool { self.releaseRequests.load(ordering: .relaxed) > 0 }
    }

    /// Claims and opens `offer` in `store`.
    static func open(_ offer: UploadOffer, in store: any UploadStore) throws -> (PartialUpload, UploadClaim) {
        let claim = store.claim(offer.id, requestRelease: {}, whenReady: {})
        return (try store.open(offer, claim: claim), claim)
    }

    static func append(_ upload: PartialUpload, _ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try upload.append($0) }
    }

    static func readAll(_ upload: PartialUpload) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Int(upload.verifiedOffset))
        var position = 0
        while position < bytes.count {
            let got = try bytes.withUnsafeMutableBytes {
                try upload.read(at: UInt64(position), into: UnsafeMutableRawBufferPointer(rebasing: $0[position...]))
            }
            #expect(got > 0)
            position += got
        }
        return bytes
    }

    static func code(_ body: () throws -> Void) -> XferError.Code? {
        do {
            try body()
            return nil
        } catch {
            return (error as? XferError)?.code
        }
    }

    @Test(arguments: UploadStoreKind.allCases)
    func aResumeStartsAtTheLastWholeBlockAfterATornWrite(_ kind: UploadStoreKind) throws {
        let fixture = try kind.makeFixture()
        let store = fixture.makeStores(1)[0]
        let offer = Self.offer()
        do {
            let (upload, claim) = try Self.open(offer, in: store)
            try Self.append(upload, Self.block(1))
            try Self.append(upload, Self.block(2))
            // Dropped without close, as a killed server leaves it; its claim ends with its connection.
            store.release(claim)
        }
        try fixture.tearWrite(upload: offer.id, bytes: [UInt8](repeating: 3, count: 1000))
        let (resumed, claim) = try Self.open(offer, in: store)
        #expect(resumed.verifiedOffset == 2 * 4096)
        let verified = try Self.readAll(resumed) == Self.block(1) + Self.block(2)
        #expect(verified, "the verified prefix reads back")
        try Self.append(resumed, Self.block(3))
        #expect(resumed.verifiedOffset == 3 * 4096)
        resumed.close()
        store.release(claim)
    }

    @Test(arguments: UploadStoreKind.allCases)
    func aCommitNeverReplacesAnExistingFile(_ kind: UploadStoreKind) throws {
        let fixture = try kind.makeFixture()
        let store = fixture.makeStores(1)[0]
        try fixture.place("data.bin", bytes: [9, 9])
        let (upload, claim) = try Self.open(Self.offer(size: 4096), in: store)
        try Self.append(upload, Self.block(5))
        let (name, path) = try upload.commit()
        store.release(claim)
        #expect(name == "data (1).bin")
        #expect(path.hasSuffix("/data (1).bin"))
        #expect(fixture.saved("data.bin") == [9, 9])
        let saved = fixture.saved("data (1).bin") == Self.block(5)
        #expect(saved)
        // Committed means gone from the partials: the same upload starts afresh.
        let (again, againClaim) = try Self.open(Self.offer(size: 4096), in: store)
        #expect(again.verifiedOffset == 0)
        again.close()
        store.release(againClaim)
    }

    @Test(arguments: UploadStoreKind.allCases)
    func aDiscardedUploadStartsOver(_ kind: UploadStoreKind) throws {
        let fixture = try kind.makeFixture()
        let store = fixture.makeStores(1)[0]
        let (upload, claim) = try Self.open(Self.offer(), in: store)
        try Self.append(upload, Self.block(1))
        upload.discard()
        store.release(claim)
        let (again, againClaim) = try Self.open(Self.offer(), in: store)
        #expect(again.verifiedOffset == 0)
        again.close()
        store.release(againClaim)
    }

    /// A newer connection takes the upload over: the old holder is asked to let go, its late writes and its commit
    /// are refused, and the new holder opens only once the old one released, at the verified offset.
    @Test(arguments: UploadStoreKind.allCases)
    func aStaleHoldersLateWriteAndCommitAreRefused(_ kind: UploadStoreKind) throws {
        let fixture = try kind.makeFixture()
        let store = fixture.makeStores(1)[0]
        let offer = Self.offer()
        let old = Holder()
        let oldClaim = old.claim(offer.id, in: store)
        #expect(old.isReady)
        let upload = try store.open(offer, claim: oldClaim)
        try Self.append(upload, Self.block(1))

        let new = Holder()
        let newClaim = new.claim(offer.id, in: store)
        #expect(old.wasAskedToLetGo)
        #expect(!new.isReady)
        #expect(Self.code { try Self.append(upload, Self.block(2)) } == .superseded)
        #expect(Self.code { _ = try upload.commit() } == .superseded)
        #expect(Self.code { _ = try store.open(offer, claim: oldClaim) } == .superseded)
        upload.close()
        store.release(oldClaim)
        #expect(new.isReady)
        let resumed = try store.open(offer, claim: newClaim)
        #expect(resumed.verifiedOffset == 4096)
        resumed.close()
        store.release(newClaim)
        // Releasing twice, or a stale claim, changes nothing.
        store.release(oldClaim)
        store.release(newClaim)
    }

    /// Three connections in a row: the third is ready only once both earlier ones let go, in whatever order.
    @Test(arguments: UploadStoreKind.allCases)
    func aTakeoverWaitsForEveryEarlierHolder(_ kind: UploadStoreKind) throws {
        let fixture = try kind.makeFixture()
        let store = fixture.makeStores(1)[0]
        let holders = [Holder(), Holder(), Holder()]
        let claims = holders.map { $0.claim(Self.offer().id, in: store) }
        #expect(holders.map(\.isReady) == [true, false, false])
        #expect(holders.map(\.wasAskedToLetGo) == [true, true, false])
        store.release(claims[1])
        #expect(!holders[2].isReady)
        store.release(claims[0])
        #expect(holders[2].isReady)
        store.release(claims[2])
    }

    /// Two stores on one backing, as two servers on one directory: only one writes an upload at a time; the
    /// other waits briefly, then refuses with `busy`, and gets it once the first let go.
    @Test(arguments: UploadStoreKind.allCases)
    func twoStoresOnOneBackingNeverWriteOneUploadAtOnce(_ kind: UploadStoreKind) throws {
        let fixture = try kind.makeFixture()
        let stores = fixture.makeStores(2)
        let offer = Self.offer()
        let (first, firstClaim) = try Self.open(offer, in: stores[0])
        try Self.append(first, Self.block(1))
        let secondClaim = stores[1].claim(offer.id, requestRelease: {}, whenReady: {})
        #expect(Self.code { _ = try stores[1].open(offer, claim: secondClaim) } == .busy)
        first.close()
        stores[0].release(firstClaim)
        let second = try stores[1].open(offer, claim: secondClaim)
        #expect(second.verifiedOffset == 4096)
        // Now the first store is the one kept out.
        let again = stores[0].claim(offer.id, requestRelease: {}, whenReady: {})
        #expect(Self.code { _ = try stores[0].open(offer, claim: again) } == .busy)
        second.close()
        stores[1].release(secondClaim)
        stores[0].release(again)
    }

    /// A store waiting for an upload that the other one commits meanwhile starts a new partial: it never
    /// writes into the saved file.
    @Test(arguments: UploadStoreKind.allCases)
    func aWaiterAfterACommitStartsAfreshAndLeavesTheSavedFileAlone(_ kind: UploadStoreKind) throws {
        let fixture = try kind.makeFixture()
        let stores = fixture.makeStores(2)
        let offer = Self.offer(size: 4096)
        let (first, firstClaim) = try Self.open(offer, in: stores[0])
        try Self.append(first, Self.block(1))
        let secondClaim = stores[1].claim(offer.id, requestRelease: {}, whenReady: {})
        // On a thread of its own: the open blocks while it waits for the lock.
        let outcome = Mutex<(offset: UInt64, code: XferError.Code?)>((.max, nil))
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            do {
                let upload = try stores[1].open(offer, claim: secondClaim)
                let offset = upload.verifiedOffset
                try Self.append(upload, Self.block(2))
                upload.close()
                outcome.withLock { $0 = (offset, nil) }
            } catch {
                outcome.withLock { $0 = (.max, (error as? XferError)?.code) }
            }
            done.signal()
        }
        usleep(50_000)
        _ = try first.commit()
        stores[0].release(firstClaim)
        done.wait()
        stores[1].release(secondClaim)
        let (offset, code) = outcome.withLock { $0 }
        #expect(code == nil)
        #expect(offset == 0)
        let savedIntact = fixture.saved("data.bin") == Self.block(1)
        #expect(savedIntact, "the waiter wrote into the saved file")
    }

    @Test(arguments: UploadStoreKind.allCases)
    func theSweepRemovesIdlePartialsButNotOnesBeingWritten(_ kind: UploadStoreKind) throws {
        let fixture = try kind.makeFixture()
        let stores = fixture.makeStores(2)
        let idle = Self.offer(id: "1111111111111111")
        let busy = Self.offer(id: "2222222222222222")
        let fresh = Self.offer(id: "3333333333333333")
        for offer in [idle, fresh] {
            let (upload, claim) = try Self.open(offer, in: stores[0])
            try Self.append(upload, Self.block(1))
            upload.close()
            stores[0].release(claim)
        }
        let (writing, writingClaim) = try Self.open(busy, in: stores[0])
        try Self.append(writing, Self.block(1))
        try fixture.age(upload: idle.id)
        try fixture.age(upload: busy.id)
        // The other store sweeps: it must not take the partial another server is writing.
        #expect(stores[1].sweep(olderThan: 86400) == 1)
        try Self.append(writing, Self.block(2))
        writing.close()
        stores[0].release(writingClaim)
        for (offer, offset) in [(idle, UInt64(0)), (busy, 8192), (fresh, 4096)] {
            let (upload, claim) = try Self.open(offer, in: stores[1])
            #expect(upload.verifiedOffset == offset, "\(offer.id)")
            upload.close()
            stores[1].release(claim)
        }
    }
}
