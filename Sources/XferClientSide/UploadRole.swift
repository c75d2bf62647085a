import Crypto
import Dispatch
import Foundation
import NIOCore
import Synchronization
import XferEvents
import XferProtocol

/// `xfer upload`'s role on one connection: hands everything to the job, which outlives the connection.
public final class UploadRole: ClientRole {
    private let job: UploadJob

    public init(job: UploadJob) {
        self.job = job
    }

    public func started(connection: ClientConnection, welcome: [String: String]) {
        self.job.attach(connection)
    }

    public func received(_ message: WireMessage, connection: ClientConnection) {
        self.job.handle(message, connection: connection)
    }

    public func writable(connection: ClientConnection) {
        self.job.pump()
    }

    public func ended(connection: ClientConnection) {
        self.job.detach()
    }
}
