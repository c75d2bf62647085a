import Dispatch
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket
import Synchronization
import XferEvents
import XferProtocol

/// Per-connection facts shared by the upgrader's callbacks and the fallback handler.
final class ConnectionSlot: @unchecked Sendable {
    // Only touched on the channel's event loop.
    var reserved = false
    var handedOver = false
    var refusal: UpgradePolicy.Decision?
}
