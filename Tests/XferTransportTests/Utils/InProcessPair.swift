import Foundation
import NIOPosix
import XferEvents

@testable import XferClientSide
@testable import XferProtocol
@testable import XferServerSide
@testable import XferTransport

/// An `XferServer` started in this process on 127.0.0.1 (port 0), saving into `inbox` through `store`.
struct InProcessServer {
    let server: XferServer
    let port: Int
    let events: RecordingEventSink

    /// Starts a server on `inbox` with `store` (a `LocalUploadStore` on `inbox` when nil).
    static func start(inbox: String, store: (any UploadStore)? = nil) async throws -> InProcessServer {
        let events = RecordingEventSink()
        let server = XferServer(
            configuration: ServerConfiguration(port: 0, directory: inbox, threads: 1),
            sink: events,
            store: store
        )
        return InProcessServer(server: server, port: try await server.start(), events: events)
    }

    private init(server: XferServer, port: Int, events: RecordingEventSink) {
        self.server = server
        self.port = port
        self.events = events
    }
}

/// One file uploaded from this process as `xfer upload` uploads it: an `UploadJob` run by `UploadRunner`.
struct InProcessUpload {
    let job: UploadJob
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let events = RecordingEventSink()
    let configuration: ClientConfiguration

    /// An upload of `path` as `name` to 127.0.0.1:`port`, with `window` blocks in memory.
    init(path: String, name: String, port: Int, window: Int = 8) throws {
        self.job = UploadJob(
            source: try UploadSource(path: path),
            name: name,
            settings: UploadSettings(window: window),
            loop: self.group.next(),
            sink: self.events,
            showProgress: false
        )
        self.configuration = ClientConfiguration(
            server: try ServerURL(parsing: "127.0.0.1:\(port)").addingQuery("upload", self.job.id),
            role: .upload
        )
    }

    /// Runs the upload to its end with up to `retries` quick reconnections; the error it ended with, if any.
    func run(retries: Int) async -> XferError? {
        await UploadRunner.run(
            self.job,
            configuration: self.configuration,
            sink: self.events,
            policy: ReconnectPolicy(base: 0.05, cap: 0.2, maxRetries: retries)
        )
    }

    /// Stops the client's event loop.
    func shutdown() async throws {
        try await self.group.shutdownGracefully()
    }
}

/// Files for an in-process test in a directory of their own: `inbox` for the server, sources beside it.
struct InProcessFiles {
    let base: String
    var inbox: String { self.base + "/inbox" }

    init() throws {
        self.base = FileManager.default.temporaryDirectory.appendingPathComponent("xfer-pair-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: self.base + "/inbox", withIntermediateDirectories: true)
    }

    /// Writes `count` random bytes to `name` beside the inbox; returns its path and bytes.
    func random(_ name: String, count: Int) throws -> (path: String, bytes: [UInt8]) {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<count / 8).flatMap { _ in withUnsafeBytes(of: generator.next() as UInt64) { Array($0) } }
        let path = self.base + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return (path, bytes)
    }

    /// The bytes the server saved as `name`.
    func saved(_ name: String) throws -> Data {
        try Data(contentsOf: URL(fileURLWithPath: self.inbox + "/" + name))
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: self.base)
    }
}

/// A store that hands every partial upload it opens to `wrap`: how a test injects a fault into the storage seam.
final class WrappingUploadStore: UploadStore {
    let inner: any UploadStore
    let wrap: @Sendable (PartialUpload) -> PartialUpload

    init(_ inner: any UploadStore, wrap: @escaping @Sendable (PartialUpload) -> PartialUpload) {
        self.inner = inner
        self.wrap = wrap
    }

    func claim(
        _ id: String,
        requestRelease: @escaping @Sendable () -> Void,
        whenReady: @escaping @Sendable () -> Void
    ) -> UploadClaim {
        self.inner.claim(id, requestRelease: requestRelease, whenReady: whenReady)
    }

    func open(_ offer: UploadOffer, claim: UploadClaim) throws(XferError) -> PartialUpload {
        self.wrap(try self.inner.open(offer, claim: claim))
    }

    func release(_ claim: UploadClaim) { self.inner.release(claim) }

    func sweep(olderThan seconds: Double) -> Int { self.inner.sweep(olderThan: seconds) }
}

/// A partial upload that does what `inner` does; subclasses change one operation to inject a fault.
class ForwardingPartialUpload: PartialUpload {
    let inner: PartialUpload

    init(_ inner: PartialUpload) {
        self.inner = inner
    }

    var verifiedOffset: UInt64 { self.inner.verifiedOffset }

    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(XferError) -> Int {
        try self.inner.read(at: offset, into: buffer)
    }

    func append(_ bytes: UnsafeRawBufferPointer) throws(XferError) { try self.inner.append(bytes) }
    func commit() throws(XferError) -> (name: String, path: String) { try self.inner.commit() }
    func close() { self.inner.close() }
    func discard() { self.inner.discard() }
}
