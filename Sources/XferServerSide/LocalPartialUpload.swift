import Foundation
import XferProtocol

#if canImport(Glibc)
import Glibc
#endif

/// A partial upload on the local disk, holding the flock of its `.part` file until it is closed.
final class LocalPartialUpload: PartialUpload {
    private let store: LocalUploadStore
    private let claim: UploadClaim
    private let offer: UploadOffer
    private let base: String
    private var fd: Int32
    private(set) var verifiedOffset: UInt64

    init(store: LocalUploadStore, claim: UploadClaim, offer: UploadOffer, base: String, fd: Int32, offset: UInt64) {
        self.store = store
        self.claim = claim
        self.offer = offer
        self.base = base
        self.fd = fd
        self.verifiedOffset = offset
        self.droppedOffset = offset
    }

    deinit {
        if self.fd >= 0 { Glibc.close(self.fd) }
    }

    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(XferError) -> Int {
        guard offset < self.verifiedOffset, buffer.count > 0 else { return 0 }
        let count = Int(min(UInt64(buffer.count), self.verifiedOffset - offset))
        var done = 0
        while done < count {
            let got = pread(self.fd, buffer.baseAddress! + done, count - done, off_t(offset) + off_t(done))
            if got < 0 && errno == EINTR { continue }
            guard got > 0 else {
                // The data ends early (a read error, a file cut behind our back): what was read is all there is.
                try self.cutBack(to: offset + UInt64(done))
                break
            }
            done += got
        }
        return done
    }

    /// Forgets the verified bytes from `end` on and truncates the data there, so that a resume starts from `end`.
    private func cutBack(to end: UInt64) throws(XferError) {
        guard ftruncate(self.fd, off_t(end)) == 0 else {
            throw LocalUploadStore.storageError(errno, "truncate the partial file of \(self.offer.name)")
        }
        self.verifiedOffset = end
        self.droppedOffset = min(self.droppedOffset, end)
    }

    func append(_ bytes: UnsafeRawBufferPointer) throws(XferError) {
        guard self.fd >= 0, self.store.holds(self.claim) else {
            throw LocalUploadStore.supersededError(self.offer.name)
        }
        let end = self.verifiedOffset + UInt64(bytes.count)
        guard end <= self.store.maxFileSize else {
            throw XferError(
                .fileTooLarge,
                "\(self.offer.name) is larger than the server's limit of \(self.store.maxFileSize) bytes (--max-file-size)"
            )
        }
        if let size = self.offer.size, end > size {
            throw XferError(.protocolError, "\(self.offer.name) sent more than its declared \(size) bytes")
        }
        var written = 0
        while written < bytes.count {
            let result = pwrite(
                self.fd,
                bytes.baseAddress! + written,
                bytes.count - written,
                off_t(self.verifiedOffset) + off_t(written)
            )
            if result < 0 {
                if errno == EINTR { continue }
                let code = errno
                // Keep the file at the verified length so that a resume starts from a clean boundary.
                ftruncate(self.fd, off_t(self.verifiedOffset))
                throw LocalUploadStore.storageError(code, "write \(self.offer.name)")
            }
            written += result
        }
        // Start writing this block to disk now (without waiting), so that the fdatasync before the final rename
        // has little left to do instead of the whole file.
        _ = cSyncFileRange(self.fd, off_t(self.verifiedOffset), off_t(bytes.count), Self.syncWrite)
        self.verifiedOffset = end
        self.dropBehind()
    }

    /// Bytes written but still in the page cache, at most: older ones are dropped once they are on disk.
    static let cachedBytes: UInt64 = 16 << 20
    static let syncWrite: UInt32 = 2  // SYNC_FILE_RANGE_WRITE
    static let syncWaitWriteWait: UInt32 = 1 | 2 | 4  // SYNC_FILE_RANGE_WAIT_BEFORE | _WRITE | _WAIT_AFTER
    /// Everything before this offset is on disk and out of the page cache.
    private var droppedOffset: UInt64 = 0

    /// Drop-behind: waits until the bytes more than `cachedBytes` behind the end are on disk, then drops them from
    /// the page cache. An upload then occupies a few MiB of cache instead of its whole size: it does not push other
    /// files out, and the kernel reuses the same pages instead of taking fresh ones (which on this VM kind costs
    /// more than the copy itself: 1 GiB took 3.3 s instead of 0.7 s). The wait costs the upload nothing in the
    /// end, since every byte has to reach the disk before the client hears that the file is saved.
    private func dropBehind() {
        guard self.verifiedOffset >= self.droppedOffset + 2 * Self.cachedBytes else { return }
        let upTo = self.verifiedOffset - Self.cachedBytes
        let start = off_t(self.droppedOffset)
        let count = off_t(upTo - self.droppedOffset)
        // Failures are not fatal here: the fdatasync before the rename reports any write error.
        if cSyncFileRange(self.fd, start, count, Self.syncWaitWriteWait) == 0 {
            _ = posix_fadvise(self.fd, start, count, Int32(POSIX_FADV_DONTNEED))
        }
        self.droppedOffset = upTo
    }

    /// Rewrites the sidecar atomically (temporary file, then rename): when the upload opens and when it closes.
    /// Its `offset` is the verified length at that moment; resuming trusts the partial file's length instead.
    func writeSidecar() throws(XferError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        guard let data = try? encoder.encode(Sidecar(offer: self.offer, offset: self.verifiedOffset)) else { return }
        let temporary = self.base + ".json.tmp"
        let fd = Glibc.open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw LocalUploadStore.storageError(errno, "write the sidecar of \(self.offer.name)") }
        let ok = data.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) == $0.count }
        Glibc.close(fd)
        guard ok, rename(temporary, self.base + ".json") == 0 else {
            throw LocalUploadStore.storageError(errno == 0 ? ENOSPC : errno, "write the sidecar of \(self.offer.name)")
        }
    }

    func commit() throws(XferError) -> (name: String, path: String) {
        guard self.fd >= 0, self.store.holds(self.claim) else {
            throw LocalUploadStore.supersededError(self.offer.name)
        }
        // The data reaches the disk before the file gets its name and before the client hears it is saved.
        guard fdatasync(self.fd) == 0 else { throw LocalUploadStore.storageError(errno, "flush \(self.offer.name)") }
        let partPath = self.base + ".part"
        for number in 0..<10_000 {
            let name = SafeFileName.numbered(self.offer.name, number)
            let target = self.store.directory + "/" + name
            // link(2) never replaces an existing entry (not even a symlink): an existing name is never overwritten.
            if link(partPath, target) == 0 {
                self.removeFiles()
                let directoryFD = Glibc.open(self.store.directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                if directoryFD >= 0 {
                    fsync(directoryFD)
                    Glibc.close(directoryFD)
                }
                self.closeFile()
                return (name, target)
            }
            if errno != EEXIST {
                throw LocalUploadStore.storageError(errno, "save \(name)")
            }
        }
        throw XferError(
            .storageFailed,
            "10000 files named like \(self.offer.name) exist already; clean up the server's --dir"
        )
    }

    func close() {
        if self.fd >= 0 {
            try? self.writeSidecar()
            self.closeFile()
        }
    }

    /// Closing the descriptor also lets go of the flock.
    private func closeFile() {
        if self.fd >= 0 {
            Glibc.close(self.fd)
            self.fd = -1
        }
    }

    /// Unlinks the sidecar, then the data, while the lock is held: a server waiting for the lock then finds the
    /// name gone (or a new file) and starts afresh, and never reads this upload's sidecar for a new file.
    private func removeFiles() {
        unlink(self.base + ".json")
        unlink(self.base + ".part")
    }

    func discard() {
        // No sidecar update: both files go.
        guard self.fd >= 0 else { return }
        self.removeFiles()
        self.closeFile()
    }
}

/// sync_file_range(2) (Linux); declared only with _GNU_SOURCE, so not visible through the Glibc module.
@_silgen_name("sync_file_range")
private func cSyncFileRange(_ fd: Int32, _ offset: off_t, _ count: off_t, _ flags: UInt32) -> Int32
