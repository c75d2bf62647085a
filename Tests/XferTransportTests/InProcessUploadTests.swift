import Crypto
import Foundation
import NIOCore
import NIOPosix
import Testing
import XferEvents

@testable import XferClientSide
@testable import XferProtocol
@testable import XferServerSide
@testable import XferTransport

/// A client and a server paired in one process (loopback only, no binary), with faults injected between them.
@Suite struct InProcessUploadTests {
    /// A fresh directory under the temporary directory.
    static func directory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("xfer-pair-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// `count` random bytes written to `path`.
    static func randomFile(_ path: String, count: Int) throws -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<count / 8).flatMap { _ in withUnsafeBytes(of: generator.next() as UInt64) { Array($0) } }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return bytes
    }

    static func field(_ event: Event, _ key: String) -> JSONScalar? { event[key] }

    @Test func anUploadThroughACorruptedBlockAndACutIsSavedWholeAndBothSidesAgreeWhereItResumed() async throws {
        let base = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let inbox = base + "/inbox"
        try FileManager.default.createDirectory(atPath: inbox, withIntermediateDirectories: true)
        let serverEvents = RecordingEventSink()
        let server = XferServer(
            configuration: ServerConfiguration(port: 0, directory: inbox, threads: 1),
            sink: serverEvents
        )
        let port = try await server.start()
        // The first connection flips a byte inside the second block (random data travels raw, 1 MiB a block),
        // then is cut once the client sent 6 MB. With a window of 2 blocks the client sends at most 3 blocks
        // before it hears that the second was refused, so the cut always falls in the resend, after the nack.
        // The second connection is clean.
        let proxy = InProcessFaultProxy(faults: [.init(flipAt: 1_600_000, cutAfter: 6_000_000)])
        let proxyPort = try await proxy.start(targetPort: port)

        let sourcePath = base + "/data.bin"
        let bytes = try Self.randomFile(sourcePath, count: 8 << 20)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let clientEvents = RecordingEventSink()
        let job = UploadJob(
            source: try UploadSource(path: sourcePath),
            name: "data.bin",
            settings: UploadSettings(window: 2),
            loop: group.next(),
            sink: clientEvents,
            showProgress: false
        )
        let configuration = ClientConfiguration(
            server: try ServerURL(parsing: "127.0.0.1:\(proxyPort)").addingQuery("upload", job.id),
            role: .upload
        )
        let failure = await UploadRunner.run(
            job,
            configuration: configuration,
            sink: clientEvents,
            policy: ReconnectPolicy(base: 0.05, cap: 0.2, maxRetries: 3)
        )
        await server.shutdown()
        await proxy.stop()
        try await group.shutdownGracefully()

        #expect(failure == nil, "\(failure?.message ?? "")")
        let saved = try Data(contentsOf: URL(fileURLWithPath: inbox + "/data.bin"))
        #expect(saved == Data(bytes))
        #expect(proxy.connections.load(ordering: .relaxed) == 2)
        // The corrupted block was refused and sent again: both sides report it.
        #expect(clientEvents.events.contains { $0.kind == .retry })
        #expect(serverEvents.events.contains { $0.kind == .retry })
        #expect(clientEvents.events.contains { $0.kind == .reconnecting })

        let status = try #require(clientEvents.events.last { $0.kind == .status })
        let fileSaved = try #require(serverEvents.events.last { $0.kind == .fileSaved })
        let digest = SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
        #expect(status["ok"] == .bool(true))
        #expect(status["sha256"] == .string(digest))
        #expect(fileSaved["sha256"] == .string(digest))
        // Both sides say where the finishing connection resumed (issue 8, item 6): after the cut, not 0.
        #expect(status["resumed_from"] == fileSaved["resumed_from"])
        guard case .int(let resumedFrom) = status["resumed_from"] else {
            Issue.record("no resumed_from in \(status.jsonLine)")
            return
        }
        #expect(resumedFrom > 0 && resumedFrom < 8 << 20 && resumedFrom % (1 << 20) == 0)
    }

    @Test func aDiskThatFillsUpFailsTheUploadAndARunOnAHealthyDiskResumesFromWhatWasVerified() async throws {
        let base = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let inbox = base + "/inbox"
        try FileManager.default.createDirectory(atPath: inbox, withIntermediateDirectories: true)
        let sourcePath = base + "/dump.bin"
        let bytes = try Self.randomFile(sourcePath, count: 6 << 20)

        /// One run of `xfer upload` against a fresh server on `inbox` with `store`.
        func run(store: any UploadStore) async throws -> (XferError?, [Event], [Event]) {
            let serverEvents = RecordingEventSink()
            let server = XferServer(
                configuration: ServerConfiguration(port: 0, directory: inbox, threads: 1),
                sink: serverEvents,
                store: store
            )
            let port = try await server.start()
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let clientEvents = RecordingEventSink()
            let job = UploadJob(
                source: try UploadSource(path: sourcePath),
                name: "dump.bin",
                settings: UploadSettings(),
                loop: group.next(),
                sink: clientEvents,
                showProgress: false
            )
            let configuration = ClientConfiguration(
                server: try ServerURL(parsing: "127.0.0.1:\(port)").addingQuery("upload", job.id),
                role: .upload
            )
            let failure = await UploadRunner.run(
                job,
                configuration: configuration,
                sink: clientEvents,
                policy: ReconnectPolicy(base: 0.05, cap: 0.2, maxRetries: 3)
            )
            await server.shutdown()
            try await group.shutdownGracefully()
            return (failure, clientEvents.events, serverEvents.events)
        }

        let local = LocalUploadStore(directory: inbox, maxFileSize: 1 << 40)
        let (failure, clientEvents, serverEvents) = try await run(store: FillingDiskStore(local, room: 3 << 20))
        #expect(failure?.code == .diskFull)
        #expect(!clientEvents.contains { $0.kind == .reconnecting }, "a full disk is not retried at once")
        #expect(serverEvents.contains { $0.kind == .error && $0["code"] == .string("disk_full") })
        #expect(!FileManager.default.fileExists(atPath: inbox + "/dump.bin"))

        let (second, clientAgain, serverAgain) = try await run(store: local)
        #expect(second == nil, "\(second?.message ?? "")")
        #expect(try Data(contentsOf: URL(fileURLWithPath: inbox + "/dump.bin")) == Data(bytes))
        let status = try #require(clientAgain.last { $0.kind == .status })
        #expect(status["resumed_from"] == .int(3 << 20))
        #expect(serverAgain.last { $0.kind == .fileSaved }?["resumed_from"] == .int(3 << 20))
    }
}

/// A store whose disk fills up after `room` bytes of any upload: what a full disk looks like to the receiver.
final class FillingDiskStore: UploadStore {
    let inner: any UploadStore
    let room: UInt64

    init(_ inner: any UploadStore, room: UInt64) {
        self.inner = inner
        self.room = room
    }

    func claim(
        _ id: String,
        requestRelease: @escaping @Sendable () -> Void,
        whenReady: @escaping @Sendable () -> Void
    ) -> UploadClaim {
        self.inner.claim(id, requestRelease: requestRelease, whenReady: whenReady)
    }

    func open(_ offer: UploadOffer, claim: UploadClaim) throws(XferError) -> PartialUpload {
        FillingPartialUpload(try self.inner.open(offer, claim: claim), room: self.room)
    }

    func release(_ claim: UploadClaim) { self.inner.release(claim) }

    func sweep(olderThan seconds: Double) -> Int { self.inner.sweep(olderThan: seconds) }
}

/// A partial upload that refuses to grow past `room` bytes with `disk_full`.
final class FillingPartialUpload: PartialUpload {
    let inner: PartialUpload
    let room: UInt64

    init(_ inner: PartialUpload, room: UInt64) {
        self.inner = inner
        self.room = room
    }

    var verifiedOffset: UInt64 { self.inner.verifiedOffset }

    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(XferError) -> Int {
        try self.inner.read(at: offset, into: buffer)
    }

    func append(_ bytes: UnsafeRawBufferPointer) throws(XferError) {
        guard self.inner.verifiedOffset + UInt64(bytes.count) <= self.room else {
            throw XferError(.diskFull, "cannot write: No space left on device (injected)")
        }
        try self.inner.append(bytes)
    }

    func commit() throws(XferError) -> (name: String, path: String) { try self.inner.commit() }
    func close() { self.inner.close() }
    func discard() { self.inner.discard() }
}
