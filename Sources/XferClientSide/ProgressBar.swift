import Foundation
import XferTransport

#if canImport(Glibc)
import Glibc
#endif

/// A one-line progress bar on stderr, drawn only when stderr is a terminal (never into logs or pipes).
final class ProgressBar: @unchecked Sendable {
    private let name: String
    var total: UInt64?
    private let started = Monotonic.now()
    private var drawn = false

    init?(name: String, total: UInt64?) {
        guard isatty(2) == 1 else { return nil }
        self.name = name
        self.total = total
    }

    func update(bytes: UInt64) {
        let seconds = max(Double(Monotonic.now() - self.started) / 1e9, 0.001)
        let rate = Double(bytes) / seconds / 1e6
        var line = "\r\(self.name.prefix(30)) "
        if let total = self.total, total > 0 {
            let fraction = min(1, Double(bytes) / Double(total))
            let filled = Int(fraction * 30)
            line += "[" + String(repeating: "#", count: filled) + String(repeating: " ", count: 30 - filled) + "] "
            line += String(format: "%3.0f%% ", fraction * 100)
        }
        line += String(format: "%.1f MB %.1f MB/s \u{1B}[K", Double(bytes) / 1e6, rate)
        var bytes = Array(line.utf8)
        bytes.withUnsafeMutableBytes { _ = write(2, $0.baseAddress, $0.count) }
        self.drawn = true
    }

    func finish() {
        if self.drawn { _ = write(2, "\n", 1) }
    }
}
