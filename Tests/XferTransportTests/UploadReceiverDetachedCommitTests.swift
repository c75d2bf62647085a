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
    /// Commits that wait until the test lets them go, so that the connection can close meanwhile.
    final class CommitGate: Sendable {
        /// Signalled when a commit starts.
        let started = DispatchSemaphore(value: 0)
        /// Signalled by the test to let the commit go on.
        let proceed = DispatchSemaphore(value: 0)
    }

    /// A partial upload whose commit waits for its gate.
    final class HeldCommitUpload: ForwardingPartialUpload {
        let gate: CommitGate

        init(_ inner: PartialUpload, gate: CommitGate) {
            self.gate = gate
            super.init(inner)
        }

        override func commit() throws(XferError) -> (name: String, path: String) {
            self.gate.started.signal()
            self.gate.proceed.wait()
            return try self.inner.commit()
        }
    }

    /// The client vanishes while the server flushes and links the file: the file lands in the directory, and the
    /// server still reports its final `progress` and `file_saved` (through its own sink: the connection is gone).
    @Test(.timeLimit(.minutes(1)))
    func aFileSavedAfterTheConnectionClosedIsStillReported() async throws {
        let files = try InProcessFiles()
        defer { files.remove() }
        let bytes = [UInt8](repeating: 42, count: 3 << 20)
        let sourcePath = files.base + "/data.bin"
        try Data(bytes).write(to: URL(fileURLWithPath: sourcePath))

        let gate = CommitGate()
        let store = WrappingUploadStore(LocalUploadStore(directory: files.inbox, maxFileSize: 1 << 30)) {
            HeldCommitUpload($0, gate: gate)
        }
        let server = try await InProcessServer.start(inbox: files.inbox, store: store)
        let serverEvents = server.events
        let proxy = InProcessFaultProxy(faults: [])
        let proxyPort = try await proxy.start(targetPort: server.port)
        let upload = try InProcessUpload(path: sourcePath, name: "data.bin", port: proxyPort)
        let client = Task { await upload.run(retries: 0) }
        // The commit has started: cut the connection (stopping the proxy closes both of its sides).
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                gate.started.wait()
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
        gate.proceed.signal()
        for _ in 0..<500 where !serverEvents.events.contains(where: { $0.kind == .fileSaved }) {
            try await Task.sleep(for: .milliseconds(10))
        }
        await server.server.shutdown()
        try await upload.shutdown()

        let saved = try files.saved("data.bin")
        #expect(saved == Data(bytes))
        let fileSaved = try #require(serverEvents.events.last { $0.kind == .fileSaved }, "no file_saved event")
        #expect(fileSaved["bytes"] == .int(3 << 20))
        #expect(fileSaved["name"] == .string("data.bin"))
        let progress = try #require(serverEvents.events.last { $0.kind == .progress })
        #expect(progress["bytes"] == .int(3 << 20))
    }
}
