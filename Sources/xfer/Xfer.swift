import ArgumentParser
import XferEvents
import XferProtocol

#if canImport(Glibc)
import Glibc
#endif

/// The `xfer` command: one binary, several subcommands.
@main
struct Xfer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "xfer",
        abstract: "Move text and files between scripts over WebSocket, with JSON-lines events.",
        discussion: """
            Every event is one JSON object per line on stdout; human diagnostics go to stderr. \
            See xfer(1) for events and exit codes, and xfer-protocol(7) for the wire protocol. \
            README.md says how to install it (make install), run it under systemd, and reach a server through a proxy.
            """,
        version: XferVersion.current,
        subcommands: [ServeCommand.self, SendCommand.self, ListenCommand.self, UploadCommand.self]
    )

    /// Parses, runs, and maps every failure to an `error` event, a stderr line, and a sysexits status.
    static func main() async {
        // A reader of our stdout that goes away must not kill a server: writes then fail with EPIPE.
        signal(SIGPIPE, SIG_IGN)
        // A file size limit (ulimit -f) must fail one upload with EFBIG, not kill the server.
        signal(SIGXFSZ, SIG_IGN)
        // One malloc arena: 1 MiB upload blocks allocated on several threads otherwise spread over per-thread
        // arenas that keep their memory (measured: 85 MB peak RSS for a 1 GiB upload, 52 MB with one arena).
        _ = cMallopt(-8, 1)  // M_ARENA_MAX from <malloc.h>
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let error as XferError {
            CommandFailure.report(error)
            Glibc.exit(error.exitStatus)
        } catch {
            let code = exitCode(for: error)
            // An ExitCode thrown by a command means it has reported its failure already.
            if code != .success, !(error is CleanExit), !(error is ExitCode) {
                var text = fullMessage(for: error)
                if text.hasPrefix("Error: ") { text.removeFirst(7) }
                FileDescriptorSink().emit(
                    .error(
                        code: XferError.Code.usage.rawValue,
                        message: text.split(separator: "\n").first.map(String.init) ?? text
                    )
                )
            }
            exit(withError: error)
        }
    }
}

/// Reports a command's failure: an `error` event on stdout and a line on stderr.
enum CommandFailure {
    static func report(_ error: XferError) {
        FileDescriptorSink().emit(.error(code: error.code.rawValue, message: error.message))
        Diagnostics.print("xfer: \(error.message)")
    }
}

/// Human diagnostics on stderr.
enum Diagnostics {
    static func print(_ line: String) {
        var bytes = Array(line.utf8)
        bytes.append(UInt8(ascii: "\n"))
        bytes.withUnsafeBytes { _ = write(2, $0.baseAddress, $0.count) }
    }
}

/// glibc's mallopt(3); <malloc.h> is not part of the Glibc module Swift imports.
@_silgen_name("mallopt")
private func cMallopt(_ parameter: Int32, _ value: Int32) -> Int32
