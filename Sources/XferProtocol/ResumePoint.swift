/// Where a reconnecting listener left off: the last `seq` it printed, and the epoch those numbers belong to.
///
/// Sequence numbers are only comparable within one epoch: a server (or a cluster's database) that starts afresh
/// numbers from 1 again under a new epoch, as Centrifugo pairs a stream's offset with its epoch. A listener that
/// resumes under another epoch is treated as a new listener.
public struct ResumePoint: Sendable, Equatable {
    /// The last `seq` the listener printed; it wants everything after it.
    public var since: UInt64
    /// The epoch `since` belongs to, from the server's `welcome`; nil when the user typed `--since` by hand.
    public var epoch: String?

    /// A resume after `since` in `epoch`.
    public init(since: UInt64, epoch: String? = nil) {
        self.since = since
        self.epoch = epoch
    }

    /// Whether this point still applies to a stream now in `epoch`: yes when the epochs match or none was given.
    public func applies(to epoch: String) -> Bool {
        self.epoch == nil || self.epoch == epoch
    }
}
