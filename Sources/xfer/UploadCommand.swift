import ArgumentParser
import Foundation
import NIOCore
import NIOPosix
import XferClientSide
import XferEvents
import XferProtocol

/// `xfer upload`: send files or a stream in checksummed, compressed blocks that resume after interruptions.
struct UploadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upload",
        abstract: "Upload files, or stdin with -, to the server's directory; resumes after interruptions.",
        discussion: """
            Each file travels in blocks, zlib-compressed unless that would not make them smaller, each with a \
            CRC-32 the server checks before writing; the whole file's SHA-256 is compared at the end. After a lost \
            connection the upload reconnects (up to --retries times) and continues from the last block the server \
            verified; running the same command again later resumes too. A stream (-) keeps its unacknowledged \
            blocks in memory (the replay window: 8 blocks, 8 MiB by default) to survive a short loss.
            """
    )

    @OptionGroup var client: ClientOptions

    @Option(
        name: .long,
        help: ArgumentHelp("Name to save a single FILE (or stdin) under on the server.", valueName: "name")
    )
    var name: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Reconnections after a lost connection before giving up (0: fail at once, exit 69).",
            valueName: "n"
        )
    )
    var retries: Int = 3

    @Option(
        name: .long,
        help: ArgumentHelp("Compression level, 0 (off) to 9; blocks travel in the zlib format.", valueName: "level")
    )
    var level: Int = 1

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Threads compressing blocks at once, 1 to 64; the default is the number of cores available.",
            valueName: "n"
        )
    )
    var threads: Int = System.coreCount

    @Option(name: .long, help: ArgumentHelp("Block size in KiB (4 to 16384).", valueName: "kib"))
    var blockSize: Int = 1024

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Blocks in memory at once: the bound on memory and a stream's replay window.",
            valueName: "n"
        )
    )
    var window: Int = 8

    @Argument(help: ArgumentHelp("Files to upload; - reads stdin (needs --name).", valueName: "file"))
    var files: [String] = []

    func validate() throws {
        guard !self.files.isEmpty else {
            throw ValidationError("name a FILE to upload, or - with --name NAME to upload stdin")
        }
        if self.files.contains("-") {
            guard self.files.count == 1 else { throw ValidationError("- (stdin) cannot be combined with other files") }
            guard self.name != nil else {
                throw ValidationError("uploading stdin needs a name: xfer upload - --name NAME")
            }
        }
        if self.name != nil && self.files.count > 1 {
            throw ValidationError("--name renames a single FILE; upload several files without it")
        }
        guard self.retries >= 0 else { throw ValidationError("--retries must be 0 or more") }
        guard (0...9).contains(self.level) else { throw ValidationError("--level must be between 0 and 9") }
        guard (4...16384).contains(self.blockSize) else {
            throw ValidationError("--block-size must be between 4 and 16384 (KiB)")
        }
        guard (1...1024).contains(self.window) else { throw ValidationError("--window must be between 1 and 1024") }
        guard UploadSettings.encoderRange.contains(self.threads) else {
            throw ValidationError(
                "--threads must be between \(UploadSettings.encoderRange.lowerBound) and \(UploadSettings.encoderRange.upperBound)"
            )
        }
    }

    func run() async throws {
        // Open every input first: a missing file fails the command before anything is sent (exit 66).
        var sources: [(UploadSource, String)] = []
        for file in self.files {
            let source = try UploadSource(path: file)
            let requested = self.name ?? URL(fileURLWithPath: file).lastPathComponent
            let name = try SafeFileName.sanitize(requested)
            sources.append((source, name))
        }
        let server = try self.client.serverURL()
        let timezone = try self.client.resolvedTimezone()
        let settings = UploadSettings(
            blockSize: self.blockSize * 1024,
            level: self.level,
            window: self.window,
            encoders: self.threads
        )
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let sink = FileDescriptorSink()
        var firstFailure: XferError?
        for (source, name) in sources {
            let job = UploadJob(
                source: source,
                name: name,
                settings: settings,
                loop: loop,
                sink: sink,
                showProgress: isatty(2) == 1
            )
            // The upload id in the URL lets a load balancer send every connection of one upload to one server.
            let configuration = self.client.configuration(
                role: .upload,
                server: server.addingQuery("upload", job.id),
                timezone: timezone
            )
            let policy = ReconnectPolicy(cap: 10, maxRetries: self.retries)
            if let error = await UploadRunner.run(
                job,
                configuration: configuration,
                sink: sink,
                policy: policy
            ) {
                CommandFailure.report(error)
                firstFailure = firstFailure ?? error
            }
        }
        try? await group.shutdownGracefully()
        if let firstFailure {
            throw ExitCode(firstFailure.exitStatus)
        }
    }
}
