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
        // then is cut in the sixth block; the second connection is clean.
        let proxy = InProcessFaultProxy(faults: [.init(flipAt: 1_600_000, cutAfter: 5_500_000)])
        let proxyPort = try await proxy.start(targetPort: port)

        let sourcePath = base + "/data.bin"
        let bytes = try Self.randomFile(sourcePath, count: 8 << 20)
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
        let failure = await UploadRunner.run(
            job,
            configuration: configuration,
            group: group,
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
}
