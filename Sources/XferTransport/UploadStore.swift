import Crypto
import Foundation
import XferProtocol

#if canImport(Glibc)
import Glibc
#endif

/// What a client said about an upload, checked and with a safe name.
public struct UploadOffer: Sendable, Equatable {
    /// The stable upload id (lowercase hex) the client reuses when it resumes.
    public var id: String
    /// The safe file name (see `SafeFileName`).
    public var name: String
    /// Total size in bytes, or nil for a stream of unknown length.
    public var size: UInt64?
    /// Raw bytes per block (the last one may be shorter).
    public var blockSize: Int
    /// The source's modification time as the client saw it (a changed file gets a new upload).
    public var mtime: String
    /// `file` or `stream`.
    public var kind: String
}

/// Where uploads are written while they arrive and where they end up. Blocking: call off the event loop.
///
/// Kept behind a protocol (as tusd keeps its DataStore apart from the handler) so that a shared-storage
/// implementation can replace the local one when several servers sit behind a balancer.
public protocol UploadStore: Sendable {
    /// Opens (or resumes) the partial upload for `offer`. Resuming re-hashes the verified prefix into `hasher`.
    func open(_ offer: UploadOffer, hasher: inout SHA256) throws(XferError) -> PartialUpload
}

/// One partial upload, owned by a single connection at a time. Blocking: call off the event loop.
public protocol PartialUpload: AnyObject {
    /// Bytes verified and written so far: the offset the client resumes from.
    var verifiedOffset: UInt64 { get }
    /// Appends verified `bytes` at `verifiedOffset`. Only verified bytes reach the partial data, so its length on
    /// disk is the offset a resume starts from (rounded down to a block).
    func append(_ bytes: UnsafeRawBufferPointer) throws(XferError)
    /// Flushes the data to disk and moves it to its final name, never replacing an existing file.
    /// Returns the name it was saved under and its absolute path.
    func commit() throws(XferError) -> (name: String, path: String)
    /// The last `count` verified bytes (fewer at the start): the next block's compression dictionary.
    func tail(_ count: Int) -> [UInt8]
    /// Closes the files and keeps the partial data for a resume.
    func close()
    /// Removes the partial data (after an integrity failure: it cannot be trusted).
    func discard()
}

/// Stores partial uploads under `DIR/.xfer-partial/` (`ID.part` for the data, `ID.json` for the sidecar), and
/// saves finished ones as `DIR/NAME` (or `NAME (1)` ... when the name exists already).
public final class LocalUploadStore: UploadStore {
    /// The directory files are saved into (absolute).
    public let directory: String
    /// The hidden directory of partial uploads.
    public let partialDirectory: String
    /// Largest upload accepted, in bytes.
    public let maxFileSize: UInt64

    /// A store saving into `directory`.
    public init(directory: String, maxFileSize: UInt64) {
        self.directory = directory
        self.partialDirectory = directory + "/.xfer-partial"
        self.maxFileSize = maxFileSize
    }

    public func open(_ offer: UploadOffer, hasher: inout SHA256) throws(XferError) -> PartialUpload {
        try self.ensurePartialDirectory()
        let base = self.partialDirectory + "/" + offer.id
        let sidecar = Sidecar.load(path: base + ".json")
        // O_NOFOLLOW: a symlink planted in .xfer-partial cannot redirect our writes.
        let fd = Glibc.open(base + ".part", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o666)
        guard fd >= 0 else { throw Self.storageError(errno, "open partial file for \(offer.name)") }
        var offset: UInt64 = 0
        if let sidecar, sidecar.matches(offer) {
            // Only verified blocks are ever written to the partial file, in order, so its length is how far the
            // upload got, even after a kill -9 (the sidecar is written at open and close only, not per block).
            // A write cut short leaves a length off the block grid: rounding down drops that block.
            var info = stat()
            fstat(fd, &info)
            offset = UInt64(max(0, info.st_size))
            offset -= offset % UInt64(offer.blockSize)
        }
        guard ftruncate(fd, off_t(offset)) == 0 else {
            let error = errno
            Glibc.close(fd)
            throw Self.storageError(error, "truncate partial file for \(offer.name)")
        }
        if offset > 0 {
            // Re-hash what is already verified, so that the final SHA-256 covers the whole file.
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            var position: UInt64 = 0
            while position < offset {
                let want = Int(min(UInt64(buffer.count), offset - position))
                let got = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(position)) }
                guard got > 0 else {
                    offset = position
                    ftruncate(fd, off_t(offset))
                    break
                }
                buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<got])) }
                position += UInt64(got)
            }
        }
        let upload = LocalPartialUpload(store: self, offer: offer, base: base, fd: fd, offset: offset)
        try upload.writeSidecar()
        return upload
    }

    private func ensurePartialDirectory() throws(XferError) {
        var info = stat()
        if lstat(self.partialDirectory, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFDIR else {
                throw XferError(
                    .storageFailed,
                    "\(self.partialDirectory) is not a directory (a symlink?): remove it so that xfer can recreate it"
                )
            }
            return
        }
        guard mkdir(self.partialDirectory, 0o700) == 0 || errno == EEXIST else {
            throw Self.storageError(errno, "create \(self.partialDirectory)")
        }
    }

    /// Removes partial uploads whose sidecar was last updated more than `olderThan` seconds ago.
    @discardableResult
    public func removeStalePartials(olderThan seconds: Double) -> Int {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: self.partialDirectory) else { return 0 }
        let now = Date().timeIntervalSince1970
        func isStale(_ path: String) -> Bool {
            var info = stat()
            return lstat(path, &info) == 0 && now - Double(info.st_mtim.tv_sec) > seconds
        }
        var removed = 0
        for name in names {
            let path = self.partialDirectory + "/" + name
            if name.hasSuffix(".json") {
                // An upload: every verified block is written to its .part, and the sidecar is written when a
                // connection opens or closes it, so the newer of the two is the upload's last activity.
                let part = self.partialDirectory + "/" + String(name.dropLast(5)) + ".part"
                if isStale(path) && (isStale(part) || !FileManager.default.fileExists(atPath: part)) {
                    unlink(part)
                    unlink(path)
                    removed += 1
                }
            } else if name.hasSuffix(".json.tmp")
                || (name.hasSuffix(".part") && !names.contains(String(name.dropLast(5)) + ".json"))
            {
                // Left over by a crash between two writes: nothing can resume from it.
                if isStale(path) { unlink(path) }
            }
        }
        return removed
    }

    static func storageError(_ code: Int32, _ what: String) -> XferError {
        let reason = String(cString: strerror(code))
        if code == ENOSPC || code == EDQUOT || code == EFBIG {
            return XferError(
                .diskFull,
                "cannot \(what): \(reason); free space on the server and run the upload again to resume"
            )
        }
        return XferError(.storageFailed, "cannot \(what): \(reason); check the server's --dir")
    }
}

/// The JSON sidecar next to a partial upload: what it is and how much of it is verified.
struct Sidecar: Codable, Equatable {
    var version = 1
    var upload: String
    var name: String
    var size: UInt64?
    var blockSize: Int
    var mtime: String
    var kind: String
    var offset: UInt64
    var updated: Double

    enum CodingKeys: String, CodingKey {
        case version, upload, name, size, mtime, kind, offset, updated
        case blockSize = "block_size"
    }

    func matches(_ offer: UploadOffer) -> Bool {
        self.upload == offer.id && self.name == offer.name && self.size == offer.size
            && self.blockSize == offer.blockSize && self.mtime == offer.mtime && self.kind == offer.kind
    }

    static func load(path: String) -> Sidecar? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return try? JSONDecoder().decode(Sidecar.self, from: data)
    }
}

/// A partial upload on the local disk.
final class LocalPartialUpload: PartialUpload {
    private let store: LocalUploadStore
    private let offer: UploadOffer
    private let base: String
    private var fd: Int32
    private(set) var verifiedOffset: UInt64

    init(store: LocalUploadStore, offer: UploadOffer, base: String, fd: Int32, offset: UInt64) {
        self.store = store
        self.offer = offer
        self.base = base
        self.fd = fd
        self.verifiedOffset = offset
        self.droppedOffset = offset
    }

    deinit {
        if self.fd >= 0 { Glibc.close(self.fd) }
    }

    func append(_ bytes: UnsafeRawBufferPointer) throws(XferError) {
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
        let sidecar = Sidecar(
            upload: self.offer.id,
            name: self.offer.name,
            size: self.offer.size,
            blockSize: self.offer.blockSize,
            mtime: self.offer.mtime,
            kind: self.offer.kind,
            offset: self.verifiedOffset,
            updated: Date().timeIntervalSince1970
        )
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        guard let data = try? encoder.encode(sidecar) else { return }
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
        // The data reaches the disk before the file gets its name and before the client hears it is saved.
        guard fdatasync(self.fd) == 0 else { throw LocalUploadStore.storageError(errno, "flush \(self.offer.name)") }
        let partPath = self.base + ".part"
        for number in 0..<10_000 {
            let name = SafeFileName.numbered(self.offer.name, number)
            let target = self.store.directory + "/" + name
            // link(2) never replaces an existing entry (not even a symlink): an existing name is never overwritten.
            if link(partPath, target) == 0 {
                unlink(partPath)
                unlink(self.base + ".json")
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

    func tail(_ count: Int) -> [UInt8] {
        let length = Int(min(UInt64(count), self.verifiedOffset))
        guard length > 0, self.fd >= 0 else { return [] }
        var bytes = [UInt8](repeating: 0, count: length)
        let got = bytes.withUnsafeMutableBytes {
            pread(self.fd, $0.baseAddress, length, off_t(self.verifiedOffset) - off_t(length))
        }
        return got == length ? bytes : []
    }

    func close() {
        if self.fd >= 0 {
            try? self.writeSidecar()
            self.closeFile()
        }
    }

    private func closeFile() {
        if self.fd >= 0 {
            Glibc.close(self.fd)
            self.fd = -1
        }
    }

    func discard() {
        // No sidecar update: both files go.
        self.closeFile()
        unlink(self.base + ".part")
        unlink(self.base + ".json")
    }
}

/// sync_file_range(2) (Linux); declared only with _GNU_SOURCE, so not visible through the Glibc module.
@_silgen_name("sync_file_range")
private func cSyncFileRange(_ fd: Int32, _ offset: off_t, _ count: off_t, _ flags: UInt32) -> Int32
