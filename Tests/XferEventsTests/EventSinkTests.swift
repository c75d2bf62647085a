import Foundation
import Testing
import XferEvents

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Checks the sinks: the in-memory recorder keeps order, the file descriptor sink writes whole lines.
@Suite struct EventSinkTests {
    @Test func recordingSinkRecordsEventsInOrder() {
        let sink = RecordingEventSink()
        #expect(sink.events.isEmpty)
        sink.emit(.reconnecting(attempt: 1, delayMs: 100))
        sink.emit([.reconnecting(attempt: 2, delayMs: 200), .ping(rttMs: 1, client: nil)])
        sink.emit([])
        sink.emit(.error(code: "timeout", message: "m"))
        #expect(sink.events.map(\.kind) == [.reconnecting, .reconnecting, .ping, .error])
        #expect(sink.events.map { $0["attempt"] } == [.int(1), .int(2), nil, nil])
    }

    @Test func recordingSinkKeepsEachBatchTogetherUnderConcurrency() async {
        let sink = RecordingEventSink()
        await withTaskGroup(of: Void.self) { group in
            for writer in 0..<8 {
                group.addTask {
                    for round in 0..<50 {
                        sink.emit([
                            .reconnecting(attempt: writer, delayMs: round),
                            .reconnecting(attempt: writer, delayMs: round),
                        ])
                    }
                }
            }
        }
        let events = sink.events
        #expect(events.count == 800)
        for pair in stride(from: 0, to: events.count, by: 2) {
            #expect(events[pair]["attempt"] == events[pair + 1]["attempt"])
            #expect(events[pair]["delay_ms"] == events[pair + 1]["delay_ms"])
        }
    }

    @Test func fileDescriptorSinkWritesOneJSONLinePerEvent() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("xfer-sink-\(UUID().uuidString)").path
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        try #require(fd >= 0)
        defer {
            close(fd)
            unlink(path)
        }
        let sink = FileDescriptorSink(fd: fd)
        sink.emit(.listening(host: "127.0.0.1", port: 1234, dir: "/tmp", pid: 1))
        sink.emit([.text(from: "a\nb"), .ping(rttMs: 2.5, client: 3)])
        sink.write([])
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 3)
        let objects = try lines.map { try parseObject(String($0)) }
        #expect(objects.map { $0["event"] as? String } == ["listening", "text", "ping"])
        #expect(objects[0]["port"] as? Int == 1234)
        #expect(objects[1]["text"] as? String == "a\nb")
    }
}

extension Event {
    /// A delivered text, for tests that need any event with a string.
    fileprivate static func text(from text: String) -> Event {
        .textDelivered(from: "t", seq: 1, text: text)
    }
}
