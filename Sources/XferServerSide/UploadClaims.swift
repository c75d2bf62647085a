import Synchronization

/// The claims on upload ids within one process: a newer claim on an id takes over from the current holder.
///
/// Claims are in memory: they order the connections of one server. Separate server processes on one directory
/// are kept apart by the store's file lock instead (see `LocalUploadStore`).
final class UploadClaims: Sendable {
    /// One claim on an id, from the moment it is made until it and every claim before it are released.
    private struct Entry {
        /// The claim's token.
        var token: UInt64
        /// Asks the claim's connection to let go.
        var requestRelease: @Sendable () -> Void
        /// Called once every claim before this one has released.
        var whenReady: (@Sendable () -> Void)?
        /// Whether this claim let go.
        var released = false
    }

    /// The claims of every id in the order they were made (the last one holds the id), and the next token.
    private struct State {
        var nextToken: UInt64 = 1
        var entries: [String: [Entry]] = [:]
    }

    private let state = Mutex(State())

    /// Claims `id` at once; see `UploadStore.claim`.
    func claim(
        _ id: String,
        requestRelease: @escaping @Sendable () -> Void,
        whenReady: @escaping @Sendable () -> Void
    ) -> UploadClaim {
        let (token, previous, ready) = self.state.withLock {
            state -> (UInt64, (@Sendable () -> Void)?, (@Sendable () -> Void)?) in
            let token = state.nextToken
            state.nextToken += 1
            var entries = state.entries[id] ?? []
            let previous = entries.last.flatMap { $0.released ? nil : $0.requestRelease }
            let ready = entries.isEmpty
            entries.append(Entry(token: token, requestRelease: requestRelease, whenReady: ready ? nil : whenReady))
            state.entries[id] = entries
            return (token, previous, ready ? whenReady : nil)
        }
        previous?()
        ready?()
        return UploadClaim(id: id, token: token)
    }

    /// Whether `claim` still holds its id (no newer claim took over and it was not released).
    func isCurrent(_ claim: UploadClaim) -> Bool {
        self.state.withLock { state in
            guard let last = state.entries[claim.id]?.last else { return false }
            return last.token == claim.token && !last.released
        }
    }

    /// Lets go of `claim`; the next claim on its id becomes ready once every claim before it has let go.
    func release(_ claim: UploadClaim) {
        let ready = self.state.withLock { state -> (@Sendable () -> Void)? in
            guard var entries = state.entries[claim.id],
                let index = entries.firstIndex(where: { $0.token == claim.token })
            else { return nil }
            entries[index].released = true
            // A claim is ready when nothing unreleased is before it: drop the released ones at the front.
            let firstHeld = entries.firstIndex { !$0.released } ?? entries.endIndex
            entries.removeFirst(firstHeld)
            guard !entries.isEmpty else {
                state.entries[claim.id] = nil
                return nil
            }
            let ready = entries[0].whenReady
            entries[0].whenReady = nil
            state.entries[claim.id] = entries
            return ready
        }
        ready?()
    }
}
