import Dispatch
import Foundation
import NIOPosix
import Synchronization
import Testing
import XferEvents

@testable import XferClientSide
@testable import XferProtocol
@testable import XferServerSide
@testable import XferTransport

/// The server's upload receiver when the connection goes away while the store commits the file.
@Suite struct UploadReceiverDetachedCommitTests {
    /// A store whose commits wait until the test lets them go, so that the connection can close meanwhile.
    final class HeldCommitStore: UploadStore {
        let inner: any UploadStore
        /// Signalled when a commit starts.
        let started = DispatchSemaphore(value: 0)
        /// Signalled by the test to let the commit go on.
        let proceed = DispatchSemaphore(value: 0)

        init(_ inner: any UploadStore) {
            self.inner = inner
        }

        func claim(
            _ id: String,
            requestRelease: @escaping @Sendable () -> Void,
            whenReady: @escaping @Sendable () -> Void
        ) -> UploadClaim {
            self.inner.claim(id, requestRelease: requestRelease, whenReady: whenReady)
        }

        func open(_ offer: UploadOffer, claim: UploadClaim) throws(XferError) -> PartialUpload {
            HeldCommitUpload(try self.inner.open(offer, claim: claim), store: self)
        }

        func release(_ claim: UploadClaim) { self.inner.release(claim) }

        func sweep(olderThan seconds: Double) -> Int { self.inner.sweep(olderThan: seconds) }
    }

    /// A partial upload whose commit waits for `HeldCommitStore.proceed`.
    final class HeldCommitUpload: PartialUpload {
        let inner: PartialUpload
        let store: HeldCommitStore

        init(_ inner: PartialUpload, store: HeldCommitStore) {
            self.inner = inner
            self.store = store
        }

        var verifiedOffset: UInt64 { self.inner.verifiedOffset }

        func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(XferError) -> Int {
            try self.inner.read(at: offset, into: buffer)
        }

        func append(_ bytes: UnsafeRawBufferPointer) throws(XferError) { try self.inner.append(bytes) }

        func commit() throws(XferError) -> (name: String, path: String) {
            self.store.started.signal()
            self.store.proceed.wait()
            return try self.inner.commit()
        }

        func close() { self.inner.close() }
        func discard() { self.inner.discard() }
    }

    /// The client vanishes while the server flushes and links the file: the file lands in the directory, and the
    /// server still reports its final `progress` and `file_saved` (through its own sink: the connection is gone).
    @Test(.timeLimit(.minutes(1)))
    func aFileSavedAfterTheConnectionClosedIsStillReported() async throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("xfer-detached-\(UUID().uuidString)")
            .path
        defer { try? FileManager.default.removeItem(atPath: base) }
        let inbox = base + "/inbox"
        try FileManager.default.createDirectory(atPath: inbox, withIntermediateDirectories: true)
        let sourcePath = base + "/data.bin"
        let bytes = [UInt8](repeating: 42, count: 3 << 20)
        try Data(bytes).write(to: URL(fileURLWithPath: sourcePath))

        let store = HeldCommitStore(LocalUploadStore(directory: inbox, maxFileSize: 1 << 30))
        let serverEvents = RecordingEventSink()
        let server = XferServer(
            configuration: ServerConfiguration(port: 0, directory: inbox, threads: 1),
            sink: serverEvents,
            store: store
        )
        let port = try await server.start()
        let proxy = InProcessFaultProxy(faults: [])
        let proxyPort = try await proxy.start(targetPort: port)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let clientEvents = RecordingEventSink()
        let job = UploadJob(
            source: try UploadSource(path: sourcePath),
            name: "data.bin",
            settings: UploadSettings(),
            loop: group.next(),
            sink: clientEvents,
            showProgress: false
        )
        let configuration = ClientConfiguration(
            server: try ServerURL(parsing: "127.0.0.1:\(proxyPort)").addingQuery("upload", job.id),
            role: .upload
        )
        let client = Task {
            await UploadRunner.run(
                job,
                configuration: configuration,
                sink: clientEvents,
                policy: ReconnectPolicy(base: 0.05, cap: 0.2, maxRetries: 0)
            )
        }
        // The commit has started: cut the connection (stopping the proxy closes both of its sides).
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                store.started.wait()
                continuation.resume()
            }
        }
        await proxy.stop()
        let failure = await client.value
        #expect(failure != nil, "the client heard of a save it should not have")
        for _ in 0..<500 where !serverEvents.events.contains(where: { $0.kind == .disconnected }) {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(serverEvents.events.contains { $0.kind == .disconnected })
        store.proceed.signal()
        for _ in 0..<500 where !serverEvents.events.contains(where: { $0.kind == .fileSaved }) {
            try await Task.sleep(for: .milliseconds(10))
        }
        await server.shutdown()
        try await group.shutdownGracefully()

        let saved = try Data(contentsOf: URL(fileURLWithPath: inbox + "/data.bin"))
        #expect(saved == Data(bytes))
        let fileSaved = try #require(serverEvents.events.last { $0.kind == .fileSaved }, "no file_saved event")
        #expect(fileSaved["bytes"] == .int(3 << 20))
        #expect(fileSaved["name"] == .string("data.bin"))
        let progress = try #require(serverEvents.events.last { $0.kind == .progress })
        #expect(progress["bytes"] == .int(3 << 20))
    }
}
