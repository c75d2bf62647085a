import ArgumentParser
import Foundation
import NIOCore
import NIOPosix
import Synchronization
import XferClientSide
import XferEvents
import XferProtocol

/// `xfer listen`: stay connected and print every text addressed to this listener.
struct ListenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "listen",
        abstract: "Stay connected and print every text sent to this listener.",
        discussion: """
            Texts arrive as text events with "from" and "seq"; seq counts texts per listener name from 1, so a \
            script can detect gaps and duplicates. After a lost connection the listener reconnects with exponential \
            backoff and jitter (events disconnected, reconnecting, connected) and resumes after the last seq it \
            printed: the server holds a named listener's texts for its --hold-seconds, so none is lost or printed \
            twice; texts no longer held are reported by a missed event. --since SEQ resumes by hand (for example \
            after a restart of the listener, from the last seq a script saved). SIGINT or SIGTERM closes the \
            connection (1000) and exits 0.
            """
    )

    @OptionGroup var client: ClientOptions

    @Option(name: .long, help: ArgumentHelp("Name to register under; senders use send --to NAME.", valueName: "name"))
    var name: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Resume after this seq: print the held texts that came after it (needs --name).",
            valueName: "seq"
        )
    )
    var since: UInt64?

    @Flag(name: .long, help: "Exit instead of reconnecting: 69 after a lost connection, 75 when the server shut down.")
    var noReconnect = false

    @Option(
        name: .long,
        help: ArgumentHelp("Longest wait between reconnection attempts, in seconds.", valueName: "seconds")
    )
    var maxBackoff: Double = 30

    func validate() throws {
        if let name = self.name, !Hello.isValidName(name) {
            throw ValidationError("--name \"\(name)\" is not valid: use 1-128 letters, digits, '.', '_', '-', '@'")
        }
        if self.since != nil && self.name == nil {
            throw ValidationError("--since needs --name: only a named listener's texts are held for it")
        }
        guard self.maxBackoff >= 0.1 else { throw ValidationError("--max-backoff must be at least 0.1 seconds") }
    }

    func run() async throws {
        var configuration = self.client.configuration(
            role: .listen,
            server: try self.client.serverURL(),
            timezone: try self.client.resolvedTimezone()
        )
        configuration.name = self.name
        let name = self.name
        let resume = Mutex<ResumePoint?>(self.since.map { ResumePoint(since: $0) })
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let stopper = SessionStopper()
        let sink = FileDescriptorSink(onBrokenPipe: { stopper.stop(on: loop) })
        let signals = SignalWatcher.onTermination { stopper.stop(on: loop) }
        defer { signals.cancel() }
        let policy = ReconnectPolicy(cap: self.maxBackoff, maxRetries: self.noReconnect ? 0 : nil)
        let failure = await ReconnectLoop.run(
            policy: policy,
            sink: sink,
            isStopped: { stopper.isStopped },
            session: {
                let outcome: ClientOutcome
                let startPoint = resume.withLock { $0 }
                var session = configuration
                session.resume = startPoint
                do {
                    outcome = try await XferClient.run(configuration: session, group: group, sink: sink) {
                        let role = ListenRole(name: name, resume: startPoint)
                        if stopper.isStopped { role.stop() }
                        stopper.current = NIOLoopBound(role, eventLoop: loop)
                        return role
                    }.get()
                } catch {
                    return .failed(XferError(.internalError, "\(error)"), afterWelcome: false)
                }
                // The next session resumes after the last text this one printed (the role is done with its loop).
                if let bound = stopper.current {
                    // Assigned even when nil: a point from an epoch the server no longer has is dropped.
                    if let point = try? await loop.submit({ Optional(bound.value.resumePoint) }).get() {
                        resume.withLock { $0 = point }
                    }
                }
                stopper.current = nil
                guard case .failed(let error, let afterWelcome) = outcome, !stopper.isStopped else { return .done }
                return .failed(error, afterWelcome: afterWelcome)
            }
        )
        try? await group.shutdownGracefully()
        if let failure { throw failure }
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
