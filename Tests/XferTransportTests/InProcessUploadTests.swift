import Crypto
import Foundation
import Testing
import XferEvents

@testable import XferClientSide
@testable import XferProtocol
@testable import XferServerSide
@testable import XferTransport

/// A client and a server paired in one process (loopback only, no binary), with faults injected between them
/// (`InProcessFaultProxy`) or into the server's storage seam (`WrappingUploadStore`).
@Suite struct InProcessUploadTests {
    @Test func anUploadThroughACorruptedBlockAndACutIsSavedWholeAndBothSidesAgreeWhereItResumed() async throws {
        let files = try InProcessFiles()
        defer { files.remove() }
        let server = try await InProcessServer.start(inbox: files.inbox)
        // The first connection flips a byte inside the second block (random data travels raw, 1 MiB a block),
        // then is cut once the client sent 6 MB. With a window of 2 blocks the client sends at most 3 blocks
        // before it hears that the second was refused, so the cut always falls in the resend, after the nack.
        // The second connection is clean.
        let proxy = InProcessFaultProxy(faults: [.init(flipAt: 1_600_000, cutAfter: 6_000_000)])
        let proxyPort = try await proxy.start(targetPort: server.port)
        let (path, bytes) = try files.random("data.bin", count: 8 << 20)
        let upload = try InProcessUpload(path: path, name: "data.bin", port: proxyPort, window: 2)
        let failure = await upload.run(retries: 3)
        await server.server.shutdown()
        await proxy.stop()
        try await upload.shutdown()

        #expect(failure == nil, "\(failure?.message ?? "")")
        #expect(try files.saved("data.bin") == Data(bytes))
        #expect(proxy.connections.load(ordering: .relaxed) == 2)
        // The corrupted block was refused and sent again: both sides report it.
        #expect(upload.events.events.contains { $0.kind == .retry })
        #expect(server.events.events.contains { $0.kind == .retry })
        #expect(upload.events.events.contains { $0.kind == .reconnecting })

        let status = try #require(upload.events.events.last { $0.kind == .status })
        let fileSaved = try #require(server.events.events.last { $0.kind == .fileSaved })
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

    /// The server's block buffers come back to its pool only when nothing else references them: a buffer given back
    /// while a payload slice, a closure or a local still held it would be replaced by fresh memory (a page fault a
    /// page). Compressed blocks (text) are inflated into a second pooled buffer; raw blocks (random) are not.
    @Test func blockBuffersReturnToTheServersPoolUnshared() async throws {
        let files = try InProcessFiles()
        defer { files.remove() }
        let server = try await InProcessServer.start(inbox: files.inbox)
        let line = Array("2026-12-05T07:39:00Z host xfer[42]: block acknowledged, offset 1048576\n".utf8)
        let text = (0..<(6 << 20) / line.count).flatMap { index in line + Array(String(index).utf8) }
        let textPath = files.base + "/log.txt"
        try Data(text).write(to: URL(fileURLWithPath: textPath))
        let (randomPath, random) = try files.random("data.bin", count: 6 << 20)
        for (path, name) in [(textPath, "log.txt"), (randomPath, "data.bin")] {
            let upload = try InProcessUpload(path: path, name: name, port: server.port)
            let failure = await upload.run(retries: 0)
            try await upload.shutdown()
            #expect(failure == nil, "\(failure?.message ?? "")")
        }
        await server.server.shutdown()
        #expect(try files.saved("log.txt") == Data(text))
        #expect(try files.saved("data.bin") == Data(random))
        let wire = server.events.events.compactMap { event -> Int64? in
            guard event.kind == .progress, event["name"] == .string("log.txt"),
                case .int(let bytes) = event["wire_bytes"]
            else { return nil }
            return bytes
        }
        #expect((wire.max() ?? .max) < Int64(text.count) / 2, "the text travelled compressed")
        let pool = server.server.context.blockBuffers
        #expect(pool.count > 0, "the blocks used pooled buffers")
        #expect(pool.sharedOnReturn == 0)
    }

    @Test func aDiskThatFillsUpFailsTheUploadAndARunOnAHealthyDiskResumesFromWhatWasVerified() async throws {
        let files = try InProcessFiles()
        defer { files.remove() }
        let (path, bytes) = try files.random("dump.bin", count: 6 << 20)

        /// One run of `xfer upload` against a fresh server on the inbox with `store`.
        func run(store: any UploadStore) async throws -> (XferError?, [Event], [Event]) {
            let server = try await InProcessServer.start(inbox: files.inbox, store: store)
            let upload = try InProcessUpload(path: path, name: "dump.bin", port: server.port)
            let failure = await upload.run(retries: 3)
            await server.server.shutdown()
            try await upload.shutdown()
            return (failure, upload.events.events, server.events.events)
        }

        let local = LocalUploadStore(directory: files.inbox, maxFileSize: 1 << 40)
        let filling = WrappingUploadStore(local) { FillingPartialUpload($0, room: 3 << 20) }
        let (failure, clientEvents, serverEvents) = try await run(store: filling)
        #expect(failure?.code == .diskFull)
        #expect(!clientEvents.contains { $0.kind == .reconnecting }, "a full disk is not retried at once")
        #expect(serverEvents.contains { $0.kind == .error && $0["code"] == .string("disk_full") })
        #expect(!FileManager.default.fileExists(atPath: files.inbox + "/dump.bin"))

        let (second, clientAgain, serverAgain) = try await run(store: local)
        #expect(second == nil, "\(second?.message ?? "")")
        #expect(try files.saved("dump.bin") == Data(bytes))
        let status = try #require(clientAgain.last { $0.kind == .status })
        #expect(status["resumed_from"] == .int(3 << 20))
        #expect(serverAgain.last { $0.kind == .fileSaved }?["resumed_from"] == .int(3 << 20))
    }
}

/// A partial upload that refuses to grow past `room` bytes with `disk_full`: a disk that fills up.
final class FillingPartialUpload: ForwardingPartialUpload {
    let room: UInt64

    init(_ inner: PartialUpload, room: UInt64) {
        self.room = room
        super.init(inner)
    }

    override func append(_ bytes: UnsafeRawBufferPointer) throws(XferError) {
        guard self.inner.verifiedOffset + UInt64(bytes.count) <= self.room else {
            throw XferError(.diskFull, "cannot write: No space left on device (injected)")
        }
        try self.inner.append(bytes)
    }
}
