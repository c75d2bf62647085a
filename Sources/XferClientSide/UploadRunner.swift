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
            let (failure, afterWelcome): (XferError?, Bool)
            switch outcome {
            case .finished: (failure, afterWelcome) = (nil, false)
            case .failed(let error, let welcomed): (failure, afterWelcome) = (error, welcomed)
            }
            let verdict = try? await job.loop.submit {
                (job.sessionEnded(failure: failure, afterWelcome: afterWelcome), job.summary)
            }.get()
            switch verdict {
            case (.saved(let name), let summary?)?:
                sink.emit(
                    .uploadStatus(
                        ok: true,
                        file: job.source.displayName,
                        name: name,
                        bytes: summary.bytes,
                        sha256: summary.sha256,
                        path: name,
                        resumedFrom: summary.resumedFrom,
                        upload: job.id
                    )
                )
                return .done
            case (.fatal(let error), _)?:
                return .fatal(error)
            case (.unfinished(let error, let welcomed), _)?:
                return .failed(error, afterWelcome: welcomed)
            case (.saved, nil)?, nil:
                return .fatal(XferError(.internalError, "the upload of \(job.name) ended in an unknown state"))
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
