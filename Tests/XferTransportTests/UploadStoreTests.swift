import Crypto
import Foundation
import Testing
import XferProtocol

@testable import XferClientSide
@testable import XferServerSide
@testable import XferTransport

#if canImport(Glibc)
import Glibc
#endif

/// `LocalUploadStore` on a real temporary directory: partial data, sidecar, resume, atomic save.
struct UploadStoreTests {
    let directory: String
    let store: LocalUploadStore

    init() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("xfer-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        self.directory = url.path
        self.store = LocalUploadStore(directory: url.path, maxFileSize: 1 << 20)
    }

    func offer(
        id: String = "0123456789abcdef0123456789abcdef",
        name: String = "data.bin",
        size: UInt64? = 8192
    )
        -> UploadOffer
    {
        UploadOffer(id: id, name: name, size: size, blockSize: 4096, mtime: "1", kind: .file)
    }

    /// Claims and opens `offer`, and re-hashes its verified prefix into `hasher` as the receiver does.
    func open(_ offer: UploadOffer, hasher: inout SHA256) throws(XferError) -> PartialUpload {
        let claim = self.store.claim(offer.id, requestRelease: {}, whenReady: {})
        let upload = try self.store.open(offer, claim: claim)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1000, alignment: 1)
        defer { buffer.deallocate() }
        var position: UInt64 = 0
        while position < upload.verifiedOffset {
            let got = try upload.read(at: position, into: buffer)
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<got]))
            position += UInt64(got)
        }
        return upload
    }

    func append(_ upload: PartialUpload, _ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try upload.append($0) }
    }

    @Test func aResumedUploadStartsAtTheVerifiedOffsetAndRehashesThePrefix() throws {
        let first = [UInt8](repeating: 1, count: 4096)
        var hasher = SHA256()
        let upload = try self.open(self.offer(), hasher: &hasher)
        #expect(upload.verifiedOffset == 0)
        try self.append(upload, first)
        upload.close()

        var resumedHasher = SHA256()
        let resumed = try self.open(self.offer(), hasher: &resumedHasher)
        #expect(resumed.verifiedOffset == 4096)
        #expect(Array(resumedHasher.finalize()) == Array(SHA256.hash(data: first)))
        let sidecar = try String(
            contentsOfFile: "\(self.directory)/.xfer-partial/\(self.offer().id).json",
            encoding: .utf8
        )
        #expect(sidecar.contains(#""offset":4096"#))
    }

    /// A server killed with SIGKILL never closes the upload (no sidecar written after open): the partial file's
    /// length still says how far it got, and a block cut short by the kill is dropped.
    @Test func aKilledServerResumesFromThePartialFilesLength() throws {
        var hasher = SHA256()
        do {
            let upload = try self.open(self.offer(size: 3 * 4096), hasher: &hasher)
            try self.append(upload, [UInt8](repeating: 4, count: 4096))
            try self.append(upload, [UInt8](repeating: 5, count: 4096))
            // Dropped without close(), as a kill -9 leaves it.
        }
        let part = "\(self.directory)/.xfer-partial/\(self.offer().id).part"
        let handle = try #require(FileHandle(forWritingAtPath: part))
        handle.seekToEndOfFile()
        handle.write(Data(repeating: 6, count: 1000))  // a third block, torn
        handle.closeFile()

        var resumedHasher = SHA256()
        let resumed = try self.open(self.offer(size: 3 * 4096), hasher: &resumedHasher)
        #expect(resumed.verifiedOffset == 8192)
        let expected = [UInt8](repeating: 4, count: 4096) + [UInt8](repeating: 5, count: 4096)
        #expect(Array(resumedHasher.finalize()) == Array(SHA256.hash(data: expected)))
        var info = stat()
        #expect(stat(part, &info) == 0 && info.st_size == 8192)
    }

    @Test func aDifferentOfferForTheSameIdStartsOver() throws {
        var hasher = SHA256()
        let upload = try self.open(self.offer(), hasher: &hasher)
        try self.append(upload, [UInt8](repeating: 2, count: 4096))
        upload.close()
        var other = self.offer()
        other.mtime = "2"
        let restarted = try self.open(other, hasher: &hasher)
        #expect(restarted.verifiedOffset == 0)
    }

    @Test func commitNeverReplacesAnExistingNameOrSymlink() throws {
        try Data("keep".utf8).write(to: URL(fileURLWithPath: "\(self.directory)/data.bin"))
        let outside = FileManager.default.temporaryDirectory.appendingPathComponent("outside-\(UUID().uuidString)")
        try Data("outside".utf8).write(to: outside)
        try FileManager.default.createSymbolicLink(
            atPath: "\(self.directory)/data (1).bin",
            withDestinationPath: outside.path
        )
        var hasher = SHA256()
        let upload = try self.open(self.offer(size: 3), hasher: &hasher)
        try self.append(upload, [7, 8, 9])
        let (name, path) = try upload.commit()
        #expect(name == "data (2).bin")
        #expect(path == "\(self.directory)/data (2).bin")
        #expect(FileManager.default.contents(atPath: path) == Data([7, 8, 9]))
        #expect(FileManager.default.contents(atPath: "\(self.directory)/data.bin") == Data("keep".utf8))
        #expect(FileManager.default.contents(atPath: outside.path) == Data("outside".utf8))
        let partials = try FileManager.default.contentsOfDirectory(atPath: "\(self.directory)/.xfer-partial")
        #expect(partials.isEmpty)
    }

    @Test func writesPastTheLimitOrTheDeclaredSizeAreRefused() throws {
        var hasher = SHA256()
        let upload = try self.open(self.offer(size: 10), hasher: &hasher)
        #expect(throws: XferError.self) { try self.append(upload, [UInt8](repeating: 0, count: 11)) }
        let unbounded = try self.open(
            self.offer(id: "fedcba9876543210fedcba9876543210", size: nil),
            hasher: &hasher
        )
        do {
            try self.append(unbounded, [UInt8](repeating: 0, count: (1 << 20) + 1))
            Issue.record("a write past --max-file-size was accepted")
        } catch {
            #expect((error as? XferError)?.code == .fileTooLarge)
        }
    }

    @Test func aSymlinkedPartialDirectoryIsRefused() throws {
        let elsewhere = FileManager.default.temporaryDirectory.appendingPathComponent("elsewhere-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: elsewhere, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(
            atPath: "\(self.directory)/.xfer-partial",
            withDestinationPath: elsewhere.path
        )
        var hasher = SHA256()
        do {
            _ = try self.open(self.offer(), hasher: &hasher)
            Issue.record("a symlinked .xfer-partial was used")
        } catch {
            #expect(error.code == .storageFailed)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: elsewhere.path).isEmpty)
    }

    @Test func stalePartialsAreRemoved() throws {
        var hasher = SHA256()
        let upload = try self.open(self.offer(), hasher: &hasher)
        try self.append(upload, [UInt8](repeating: 3, count: 4096))
        upload.close()
        #expect(self.store.sweep(olderThan: 3600) == 0)
        let orphan = "\(self.directory)/.xfer-partial/00000000000000000000000000000000.part"
        let torn = "\(self.directory)/.xfer-partial/\(self.offer().id).json.tmp"
        try Data([1]).write(to: URL(fileURLWithPath: orphan))
        try Data([2]).write(to: URL(fileURLWithPath: torn))
        #expect(self.store.sweep(olderThan: -1) == 1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(self.directory)/.xfer-partial").isEmpty)
    }

    /// The partial data turns out shorter than the store trusted (a read error, a file cut behind its back) while
    /// a resume re-reads it: the upload is cut back to what could be read, and the client resumes from there.
    @Test func aPartialThatEndsEarlyIsCutBackToWhatCouldBeRead() throws {
        let offer = self.offer(size: 3 * 4096)
        var hasher = SHA256()
        let upload = try self.open(offer, hasher: &hasher)
        try self.append(upload, [UInt8](repeating: 5, count: 3 * 4096))
        #expect(truncate("\(self.directory)/.xfer-partial/\(offer.id).part", 6000) == 0)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        #expect(try upload.read(at: 0, into: buffer) == 6000)
        #expect(upload.verifiedOffset == 6000)
        #expect(try upload.read(at: 6000, into: buffer) == 0)
        try self.append(upload, [UInt8](repeating: 6, count: 3 * 4096 - 6000))
        let saved = try upload.commit()
        let bytes = try #require(FileManager.default.contents(atPath: saved.path))
        #expect(Array(bytes) == [UInt8](repeating: 5, count: 6000) + [UInt8](repeating: 6, count: 3 * 4096 - 6000))
    }

    /// Another server process writes the upload: `open` refuses with `busy` at once instead of holding the
    /// connection's I/O thread while it waits (the receiver tries again on a timer).
    @Test func aBusyUploadIsRefusedAtOnceWithoutBlocking() throws {
        let offer = self.offer()
        var hasher = SHA256()
        let holder = try self.open(offer, hasher: &hasher)
        let other = LocalUploadStore(directory: self.directory, maxFileSize: 1 << 20)
        let claim = other.claim(offer.id, requestRelease: {}, whenReady: {})
        let start = Monotonic.now()
        var code: XferError.Code?
        do {
            _ = try other.open(offer, claim: claim)
        } catch {
            code = error.code
        }
        #expect(code == .busy)
        #expect(Monotonic.now() - start < 200_000_000, "open waited for the lock")
        holder.close()
        other.release(claim)
    }

    /// Orphaned `.part` files (no sidecar) and idle uploads are swept; many of them are swept in one pass.
    @Test func theSweepRemovesOrphanedPartsAndIdleUploadsAmongMany() throws {
        let partial = "\(self.directory)/.xfer-partial"
        try FileManager.default.createDirectory(atPath: partial, withIntermediateDirectories: true)
        let old = Date(timeIntervalSinceNow: -30 * 86400)
        for index in 0..<200 {
            let id = String(format: "%032x", index)
            let names = index % 2 == 0 ? ["\(id).part"] : ["\(id).part", "\(id).json"]
            for name in names {
                let path = "\(partial)/\(name)"
                #expect(FileManager.default.createFile(atPath: path, contents: Data([1])))
                try FileManager.default.setAttributes([.modificationDate: old], ofItemAtPath: path)
            }
        }
        #expect(self.store.sweep(olderThan: 86400) == 100)
        #expect(try FileManager.default.contentsOfDirectory(atPath: partial).isEmpty)
    }
}
