import XferProtocol

/// A connection's hold on one upload id, from `UploadStore.claim`. A newer claim on the same id makes it stale:
/// the store then refuses its writes.
public struct UploadClaim: Sendable, Hashable {
    /// The upload id claimed.
    public let id: String
    /// Tells this claim from earlier and later claims on the same id.
    public let token: UInt64

    /// A claim on `id` with `token`.
    public init(id: String, token: UInt64) {
        self.id = id
        self.token = token
    }
}

/// Where uploads are written while they arrive, who may write each one, and where they end up.
///
/// Kept behind a protocol (as tusd keeps its DataStore and Locker apart from the handler) so that a shared store
/// can replace the local one when several servers sit behind a balancer. `claim` and `release` return at once;
/// `open` and `sweep` block: call them off the event loop.
public protocol UploadStore: Sendable {
    /// Claims upload `id` for one connection; from now on only this claim may write it.
    ///
    /// A connection that holds the id already is asked to let go (`requestRelease` of that holder is called): after
    /// a cut the server may not yet know that the old connection is dead, and the client that reconnects must not
    /// wait for the ping timeout. `whenReady` is called (at once, or on the thread of the last release) once every
    /// earlier claim on the id has been released, so that the files are closed before the new holder opens them.
    func claim(
        _ id: String,
        requestRelease: @escaping @Sendable () -> Void,
        whenReady: @escaping @Sendable () -> Void
    ) -> UploadClaim

    /// Opens (or resumes) the partial upload for `offer` under `claim`. Blocking.
    ///
    /// Throws `busy` when another server process writes this upload (the caller tries again a little later: `open`
    /// need not wait), `superseded` when `claim` is stale, `storage_failed` or `disk_full` when the files cannot be
    /// opened.
    func open(_ offer: UploadOffer, claim: UploadClaim) throws(XferError) -> PartialUpload

    /// Lets go of `claim`, after its partial upload was closed, committed or discarded (or never opened). A newer
    /// claim waiting for it proceeds. Releasing a claim twice, or a stale one, is harmless.
    func release(_ claim: UploadClaim)

    /// Removes partial uploads idle for more than `seconds` that nobody is writing; returns how many. Blocking.
    @discardableResult
    func sweep(olderThan seconds: Double) -> Int
}

/// One partial upload, opened under a claim by a single connection. Blocking: call off the event loop.
public protocol PartialUpload: AnyObject {
    /// Bytes verified and written so far: the offset the client resumes from.
    var verifiedOffset: UInt64 { get }
    /// Reads verified bytes from `offset` into `buffer` (never past `verifiedOffset`); returns how many it read.
    /// A resume re-hashes the verified prefix this way, and reads the next block's compression dictionary.
    /// When the stored data ends early (a read error, data cut behind the store's back), the upload is cut back to
    /// what could be read: `verifiedOffset` becomes the end of it, and a read there returns 0.
    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(XferError) -> Int
    /// Appends verified `bytes` at `verifiedOffset`. Only verified bytes reach the partial data, so its length is
    /// the offset a resume starts from (rounded down to a block). Throws `superseded` once the claim is stale.
    func append(_ bytes: UnsafeRawBufferPointer) throws(XferError)
    /// Flushes the data to stable storage and gives it its final name, never replacing an existing file.
    /// Returns the name it was saved under and its absolute path. Throws `superseded` once the claim is stale.
    func commit() throws(XferError) -> (name: String, path: String)
    /// Closes the upload and keeps the partial data for a resume.
    func close()
    /// Removes the partial data (after an integrity failure: it cannot be trusted).
    func discard()
}
