import Foundation
import XferProtocol
import XferTransport

#if canImport(Glibc)
import Glibc
#endif

/// Stores partial uploads under `DIR/.xfer-partial/` (`ID.part` for the data, `ID.json` for the sidecar), and
/// saves finished ones as `DIR/NAME` (or `NAME (1)` ... when the name exists already).
///
/// Ownership has two layers. Within the process, `UploadClaims` lets a newer connection take an upload over.
/// Across processes (several `xfer serve` on one `--dir`), whoever writes an upload holds `flock(LOCK_EX)` on its
/// `.part` file: a second server's `open` throws `busy` (at once by default; its upload receiver tries again for a
/// while without holding a thread, then refuses the offer). flock locks belong to the open file description, so
/// they also keep two stores of one process apart; a POSIX `lockf`/`F_SETLK` lock would be lost silently when any
/// code of the process closed another descriptor of the same file (NOTES.md).
public final class LocalUploadStore: UploadStore {
    /// The directory files are saved into (absolute).
    public let directory: String
    /// The hidden directory of partial uploads.
    public let partialDirectory: String
    /// Largest upload accepted, in bytes.
    public let maxFileSize: UInt64
    /// How long `open` blocks, waiting for another process to let go of an upload, before it throws `busy`, in
    /// seconds. 0 (the server's choice) throws at once: `UploadReceiver` tries again on a timer instead, so that a
    /// waiting offer holds no thread.
    public let lockWait: Double
    private let claims = UploadClaims()

    /// A store saving into `directory`; by default `open` does not wait for a busy upload (`lockWait` 0).
    public init(directory: String, maxFileSize: UInt64, lockWait: Double = 0) {
        self.directory = directory
        self.partialDirectory = directory + "/.xfer-partial"
        self.maxFileSize = maxFileSize
        self.lockWait = lockWait
    }

    public func claim(
        _ id: String,
        requestRelease: @escaping @Sendable () -> Void,
        whenReady: @escaping @Sendable () -> Void
    ) -> UploadClaim {
        self.claims.claim(id, requestRelease: requestRelease, whenReady: whenReady)
    }

    public func release(_ claim: UploadClaim) {
        self.claims.release(claim)
    }

    /// Whether `claim` still holds its upload (for the partial upload's writes).
    func holds(_ claim: UploadClaim) -> Bool {
        self.claims.isCurrent(claim)
    }

    public func open(_ offer: UploadOffer, claim: UploadClaim) throws(XferError) -> PartialUpload {
        guard claim.id == offer.id, self.holds(claim) else { throw Self.supersededError(offer.name) }
        try self.ensurePartialDirectory()
        let base = self.partialDirectory + "/" + offer.id
        let fd = try self.lockPartFile(base + ".part", offer: offer)
        // Read under the lock: only the holder of the lock writes the sidecar.
        let sidecar = Sidecar.load(path: base + ".json")
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
        let upload = LocalPartialUpload(store: self, claim: claim, offer: offer, base: base, fd: fd, offset: offset)
        try upload.writeSidecar()
        return upload
    }

    /// Opens `path` (created if missing) and takes its exclusive flock, waiting up to `lockWait` (if not 0) for
    /// another process to let go. Returns the locked descriptor.
    private func lockPartFile(_ path: String, offer: UploadOffer) throws(XferError) -> Int32 {
        let deadline = Monotonic.now() + UInt64(max(0, self.lockWait) * 1e9)
        while true {
            // O_NOFOLLOW: a symlink planted in .xfer-partial cannot redirect our writes.
            let fd = Glibc.open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o666)
            guard fd >= 0 else { throw Self.storageError(errno, "open partial file for \(offer.name)") }
            while flock(fd, LOCK_EX | LOCK_NB) != 0 {
                let error = errno
                if error == EINTR { continue }
                guard error == EWOULDBLOCK else {
                    Glibc.close(fd)
                    throw Self.storageError(error, "lock partial file for \(offer.name)")
                }
                guard Monotonic.now() < deadline else {
                    Glibc.close(fd)
                    throw XferError(
                        .busy,
                        "another xfer server on this --dir is writing upload \(offer.id) (\(offer.name)) right now; the client retries, and resumes once that server lets go"
                    )
                }
                usleep(20_000)
            }
            // The holder may have committed or discarded the upload while we waited: our descriptor then names a
            // file that is gone from the directory. Open the name again (a fresh file, or the next writer's).
            if Self.isLinked(fd, at: path) { return fd }
            Glibc.close(fd)
        }
    }

    /// Whether `fd` is still the file at `path`.
    private static func isLinked(_ fd: Int32, at path: String) -> Bool {
        var open = stat()
        var named = stat()
        return fstat(fd, &open) == 0 && lstat(path, &named) == 0 && open.st_dev == named.st_dev
            && open.st_ino == named.st_ino
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

    /// Removes partial uploads whose sidecar and data were last updated more than `seconds` ago, unless a server
    /// (this one or another on the same directory) holds the upload's lock.
    @discardableResult
    public func sweep(olderThan seconds: Double) -> Int {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: self.partialDirectory) else { return 0 }
        let now = Date().timeIntervalSince1970
        func isStale(_ path: String) -> Bool {
            var info = stat()
            return lstat(path, &info) == 0 && now - Double(info.st_mtim.tv_sec) > seconds
        }
        let sidecars = Set(names.filter { $0.hasSuffix(".json") })
        var removed = 0
        for name in names {
            let path = self.partialDirectory + "/" + name
            if name.hasSuffix(".json") {
                // An upload: every verified block is written to its .part, and the sidecar is written when a
                // connection opens or closes it, so the newer of the two is the upload's last activity.
                let part = self.partialDirectory + "/" + String(name.dropLast(5)) + ".part"
                if isStale(path) && (isStale(part) || !FileManager.default.fileExists(atPath: part)) {
                    if Self.removeUnlocked(part: part, sidecar: path) { removed += 1 }
                }
            } else if name.hasSuffix(".json.tmp") {
                // Left over by a crash between two writes of a sidecar.
                if isStale(path) { unlink(path) }
            } else if name.hasSuffix(".part") && !sidecars.contains(String(name.dropLast(5)) + ".json") {
                // Left over by a crash before the first sidecar: nothing can resume from it.
                if isStale(path) { Self.removeUnlocked(part: path, sidecar: nil) }
            }
        }
        return removed
    }

    /// Removes an upload's files unless someone holds its lock; the lock is held while removing, so that a writer
    /// that was waiting for it notices that its file is gone (see `lockPartFile`).
    @discardableResult
    private static func removeUnlocked(part: String, sidecar: String?) -> Bool {
        let fd = Glibc.open(part, O_RDWR | O_NOFOLLOW | O_CLOEXEC)
        if fd >= 0 {
            defer { Glibc.close(fd) }
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { return false }
        }
        if let sidecar { unlink(sidecar) }
        unlink(part)
        return true
    }

    static func supersededError(_ name: String) -> XferError {
        XferError(
            .superseded,
            "a newer connection took the upload of \(name) over; this connection may no longer write it"
        )
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
