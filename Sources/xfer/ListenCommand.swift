import ArgumentParser
import Foundation
import NIOCore
import NIOPosix
import Synchronization
import XferEvents
import XferProtocol
import XferTransport

/// `xfer listen`: stay connected and print every text addressed to this listener.
struct ListenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "listen",
        abstract: "Stay connected and print every text sent to this listener.",
        discussion: """
            Texts arrive as text events with "from" and "seq"; seq counts texts per listener name from 1, so a \
            script can detect gaps and duplicates. After a lost connection the listener reconnects with exponential \
            backoff and jitter (events disconnected, reconnecting, connected); the server holds texts for a named \
            listener while it is away. SIGINT or SIGTERM closes the connection (1000) and exits 0.
            """
    )

    @OptionGroup var client: ClientOptions

    @Option(name: .long, help: ArgumentHelp("Name to register under; senders use send --to NAME.", valueName: "name"))
    var name: String?

    @Flag(name: .long, help: "Exit instead of reconnecting: 69 after a lost connection, 75 when the server shut down.")
    var noReconnect = false

    @Option(
        name: .long,
        help: ArgumentHelp("Longest wait between reconnection attempts, in seconds.", valueName: "seconds")
    )
    var maxBackoff: Double = 30

    func validate() throws {
        if let name = self.name, !ServerConnectionStateMachine.isValidName(name) {
            throw ValidationError("--name \"\(name)\" is not valid: use 1-128 letters, digits, '.', '_', '-', '@'")
        }
        guard self.maxBackoff >= 0.1 else { throw ValidationError("--max-backoff must be at least 0.1 seconds") }
    }

    func run() async throws {
        var configuration = self.client.configuration(
            role: "listen",
            server: try self.client.serverURL(),
            timezone: try self.client.resolvedTimezone()
        )
        configuration.name = self.name
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let stopper = SessionStopper()
        let sink = FileDescriptorSink(onBrokenPipe: { stopper.stop(on: loop) })
        let signals = SignalWatcher.onTermination { stopper.stop(on: loop) }
        var backoff = Backoff(base: 0.5, cap: self.maxBackoff)
        defer { signals.cancel() }
        while true {
            let outcome = try await XferClient.run(configuration: configuration, group: group, sink: sink) {
                let role = ListenRole()
                if stopper.isStopped { role.stop() }
                stopper.current = NIOLoopBound(role, eventLoop: loop)
                return role
            }.get()
            stopper.current = nil
            if stopper.isStopped {
                try? await group.shutdownGracefully()
                return
            }
            guard case .failed(let error, let afterWelcome) = outcome else {
                try? await group.shutdownGracefully()
                return
            }
            let retryable: Set<XferError.Code> = [
                .connectionLost, .serverUnreachable, .timeout, .shutdown, .serverFull, .handshakeTimeout, .busy,
            ]
            guard !self.noReconnect, retryable.contains(error.code) else {
                try? await group.shutdownGracefully()
                throw error
            }
            if afterWelcome { backoff.reset() }
            let delay = backoff.next()
            Diagnostics.print("xfer: \(error.message); reconnecting in \(Int(delay * 1000)) ms")
            sink.emit(.reconnecting(attempt: backoff.attempt, delayMs: Int(delay * 1000)))
            let deadline = Date().addingTimeInterval(delay)
            while Date() < deadline && !stopper.isStopped {
                try? await Task.sleep(nanoseconds: 50_000_000)
            }
            if stopper.isStopped {
                try? await group.shutdownGracefully()
                return
            }
        }
    }
}

/// Exponential backoff with full jitter: attempt n waits a random time in [cap(base * 2^n) / 2, cap(...)].
struct Backoff {
    let base: Double
    let cap: Double
    private(set) var attempt = 0

    init(base: Double, cap: Double) {
        self.base = base
        self.cap = cap
    }

    mutating func next() -> Double {
        self.attempt += 1
        let ceiling = min(self.cap, self.base * pow(2, Double(self.attempt - 1)))
        // Half fixed, half random: spreads reconnecting clients without ever retrying at once.
        return ceiling / 2 + Double.random(in: 0...(ceiling / 2))
    }

    mutating func reset() {
        self.attempt = 0
    }
}

/// Lets a signal handler end the current listener session cleanly.
final class SessionStopper: @unchecked Sendable {
    private let lock = NSLock()
    private var stopped = false
    private var role: NIOLoopBound<ListenRole>?

    var current: NIOLoopBound<ListenRole>? {
        get { self.lock.withLock { self.role } }
        set { self.lock.withLock { self.role = newValue } }
    }

    var isStopped: Bool { self.lock.withLock { self.stopped } }

    func stop(on loop: EventLoop) {
        let role = self.lock.withLock { () -> NIOLoopBound<ListenRole>? in
            self.stopped = true
            return self.role
        }
        if let role {
            loop.execute { role.value.stop() }
        }
    }
}
