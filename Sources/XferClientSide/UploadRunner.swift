import NIOCore
import XferEvents
import XferProtocol

/// Runs one `UploadJob` to its end: as many sessions as the reconnect policy allows, then the upload's `status`
/// event, saved or not. `xfer upload` calls it once per file; tests call it in-process.
public enum UploadRunner {
    /// Uploads `job` to `configuration.server`, reconnecting by `policy`; emits the final `status` to `sink` and
    /// returns the error the upload ended with, if any. Connections run on `job.loop`.
    public static func run(
        _ job: UploadJob,
        configuration: ClientConfiguration,
        sink: any EventSink,
        policy: ReconnectPolicy
    ) async -> XferError? {
        let failure = await ReconnectLoop.run(policy: policy, sink: sink) {
            let outcome: ClientOutcome
            do {
                // Every connection runs on the job's loop: the job and its state machine live there.
                outcome = try await XferClient.run(configuration: configuration, group: job.loop, sink: sink) {
                    UploadRole(job: job)
                }.get()
            } catch {
                return .failed(XferError(.internalError, "\(error)"), afterWelcome: false)
            }
            let (saved, fatal, state) =
                (try? await job.loop.submit { (job.savedName, job.fatalError, job.summary) }.get()) ?? (nil, nil, nil)
            if let saved, let state {
                sink.emit(
                    .uploadStatus(
                        ok: true,
                        file: job.source.displayName,
                        name: saved,
                        bytes: state.bytes,
                        sha256: state.sha256,
                        path: saved,
                        resumedFrom: state.resumedFrom,
                        upload: job.id
                    )
                )
                return .done
            }
            if let fatal { return .fatal(fatal) }
            switch outcome {
            case .finished:
                return .failed(
                    XferError(.connectionLost, "the server closed the upload of \(job.name) before saving it"),
                    afterWelcome: false
                )
            case .failed(let failure, let afterWelcome):
                return .failed(failure, afterWelcome: afterWelcome)
            }
        }
        guard let failure else { return nil }
        let (resumedFrom, verified) =
            (try? await job.loop.submit { (job.resumedFrom ?? 0, job.acknowledgedBytes) }.get()) ?? (0, 0)
        sink.emit(
            .uploadStatus(
                ok: false,
                file: job.source.displayName,
                name: job.name,
                bytes: verified,
                sha256: nil,
                path: nil,
                resumedFrom: resumedFrom,
                upload: job.id,
                code: failure.code.rawValue,
                reason: failure.message
            )
        )
        return failure
    }
}
