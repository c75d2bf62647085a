import ArgumentParser
import NIOCore
import NIOPosix
import XferClientSide
import XferEvents
import XferProtocol

/// `xfer send`: send text messages and wait for each one's status.
struct SendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send",
        abstract: "Send text messages and wait until the server acknowledges each one.",
        discussion: """
            Each TEXT argument is one message; with no TEXT, each line of stdin is one message (without its \
            newline; empty lines included). Messages are pipelined: up to --window are in flight at once, in order. \
            One status event per message; the exit status is 0 only if every message got "ok": true.
            """
    )

    @OptionGroup var client: ClientOptions

    @Option(name: .long, help: ArgumentHelp("Relay to the listeners registered under this name.", valueName: "name"))
    var to: String?

    @Flag(name: .long, help: "Relay to every listener and plain client (held for listener names that are away).")
    var all = false

    @Option(name: .long, help: ArgumentHelp("Most messages in flight before waiting for statuses.", valueName: "n"))
    var window: Int = 1000

    @Argument(help: ArgumentHelp("Messages to send; none reads one message per stdin line.", valueName: "text"))
    var texts: [String] = []

    func validate() throws {
        if self.to != nil && self.all {
            throw ValidationError("use either --to NAME or --all, not both")
        }
        if let to = self.to, !Hello.isValidName(to) {
            throw ValidationError(
                "--to \"\(to)\" is not a valid listener name: use letters, digits, '.', '_', '-', '@'"
            )
        }
        guard self.window >= 1, self.window <= 1_000_000 else {
            throw ValidationError("--window must be between 1 and 1000000")
        }
    }

    func run() async throws {
        var configuration = self.client.configuration(
            role: .send,
            server: try self.client.serverURL(),
            timezone: try self.client.resolvedTimezone()
        )
        configuration.relayTo = self.to
        configuration.relayToAll = self.all
        let source = self.texts.isEmpty ? LineSource(fd: 0) : LineSource(lines: self.texts)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let role = UncheckedBox(SendRole(source: source, window: self.window))
        let sink = FileDescriptorSink()
        let outcome = try await XferClient.run(configuration: configuration, group: group, sink: sink) {
            role.value
        }.get()
        try? await group.shutdownGracefully()
        switch outcome {
        case .finished:
            // The loop has stopped: the role is no longer touched by any other thread.
            if let problem = role.value.problem {
                throw problem
            }
        case .failed(let error, _):
            throw error
        }
    }
}
