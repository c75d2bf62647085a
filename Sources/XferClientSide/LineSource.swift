import Foundation
import NIOCore
import XferProtocol

/// One item from a line source.
public enum LineItem: Sendable {
    /// A line (without its newline).
    case line(String)
    /// A line that was not valid UTF-8 (its 1-based line number); it is reported and skipped.
    case invalid(lineNumber: Int)
}

/// Lines for `xfer send`: the command-line arguments, or stdin read on its own thread.
///
/// Reading stdin blocks, so a thread reads 64 KiB at a time, splits lines, and queues at most `capacity` of them;
/// the event loop takes them without blocking and is woken when more arrive.
public final class LineSource: @unchecked Sendable {
    private let condition = NSCondition()
    private var queue: [LineItem] = []
    private var head = 0
    private var ended = false
    private var readError: XferError?
    private var waiter: (@Sendable () -> Void)?
    private let capacity: Int

    /// A source holding exactly `lines`.
    public init(lines: [String]) {
        self.capacity = max(lines.count, 1)
        self.queue = lines.map { .line($0) }
        self.ended = true
    }

    /// A source reading lines from `fd` (stdin) on a new thread.
    public init(fd: Int32, capacity: Int = 8192) {
        self.capacity = capacity
        let thread = Thread { [self] in self.readLoop(fd: fd) }
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// The next items available now (up to `max`), whether the input ended after them, and any read error.
    /// When nothing is available and the input has not ended, `wake` is called once more arrives.
    public func take(
        max: Int,
        wake: @escaping @Sendable () -> Void
    ) -> (items: [LineItem], ended: Bool, error: XferError?) {
        self.condition.lock()
        defer { self.condition.unlock() }
        let available = self.queue.count - self.head
        let count = Swift.min(available, max)
        let items = Array(self.queue[self.head..<(self.head + count)])
        self.head += count
        if self.head == self.queue.count {
            self.queue.removeAll(keepingCapacity: true)
            self.head = 0
        }
        let drained = self.head == self.queue.count
        if drained && !self.ended && count < max {
            self.waiter = wake
        }
        self.condition.signal()
        return (items, self.ended && drained, drained ? self.readError : nil)
    }

    private func push(_ items: [LineItem]) {
        self.condition.lock()
        while self.queue.count - self.head >= self.capacity {
            self.condition.wait()
        }
        self.queue.append(contentsOf: items)
        let waiter = self.waiter
        self.waiter = nil
        self.condition.unlock()
        waiter?()
    }

    private func finish(error: XferError?) {
        self.condition.lock()
        self.ended = true
        self.readError = error
        let waiter = self.waiter
        self.waiter = nil
        self.condition.unlock()
        waiter?()
    }

    private func readLoop(fd: Int32) {
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var partial: [UInt8] = []
        var lineNumber = 0
        var batch: [LineItem] = []
        func emit(_ bytes: ArraySlice<UInt8>) {
            lineNumber += 1
            if let text = String(validating: bytes, as: UTF8.self) {
                batch.append(.line(text))
            } else {
                batch.append(.invalid(lineNumber: lineNumber))
            }
        }
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                let reason = String(cString: strerror(errno))
                return self.finish(error: XferError(.inputUnreadable, "cannot read stdin: \(reason)"))
            }
            if count == 0 { break }
            var start = 0
            for index in 0..<count where chunk[index] == UInt8(ascii: "\n") {
                if partial.isEmpty {
                    emit(chunk[start..<index])
                } else {
                    partial.append(contentsOf: chunk[start..<index])
                    emit(partial[...])
                    partial.removeAll(keepingCapacity: true)
                }
                start = index + 1
            }
            partial.append(contentsOf: chunk[start..<count])
            if !batch.isEmpty {
                self.push(batch)
                batch.removeAll(keepingCapacity: true)
            }
        }
        if !partial.isEmpty {
            emit(partial[...])
            self.push(batch)
        }
        self.finish(error: nil)
    }
}
