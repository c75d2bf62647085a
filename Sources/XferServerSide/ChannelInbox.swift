import NIOCore
import NIOWebSocket
import Synchronization
import XferProtocol

/// A connection's channel as a `TextInbox`: plain clients get a JSON text frame, `xfer` clients a `deliver`
/// message.
///
/// Every text is counted in the connection's `OutboundQueue` until the socket took it: a connection that does not
/// read stops receiving texts at `--max-queued-bytes` or `--max-queued-texts`, and is closed as a slow consumer.
struct ChannelInbox: TextInbox {
    let channel: Channel
    let plain: Bool
    let queue: OutboundQueueBox

    /// An inbox writing to `channel`; `queue` bounds what it may have queued (by default the server's defaults).
    init(
        channel: Channel,
        plain: Bool,
        queue: OutboundQueueBox = OutboundQueueBox(
            maxBytes: ServerConfiguration().maxQueuedBytes,
            maxTexts: ServerConfiguration().maxQueuedTexts
        )
    ) {
        self.channel = channel
        self.plain = plain
        self.queue = queue
    }

    func deliver(seq: UInt64, from: String, text: String) -> Bool {
        var buffer: ByteBuffer
        let opcode: WebSocketOpcode
        if self.plain {
            let json = PlainClientFrame.text(seq: seq, from: from, text: text).json
            buffer = self.channel.allocator.buffer(capacity: json.count)
            buffer.writeBytes(json)
            opcode = .text
        } else {
            buffer = WireMessage.deliver(seq: seq, from: from, text: text).encoded(allocator: self.channel.allocator)
            opcode = .binary
        }
        let size = buffer.readableBytes
        switch self.queue.enqueue(bytes: size) {
        case .write:
            let queue = self.queue
            self.channel.writeAndFlush(WebSocketFrame(fin: true, opcode: opcode, data: buffer))
                .whenComplete { _ in queue.written(bytes: size) }
            return true
        case .closeSlowConsumer(let bytes, let texts):
            let event = SlowConsumerEvent(queuedBytes: bytes, queuedTexts: texts)
            let channel = self.channel
            channel.eventLoop.execute { channel.pipeline.fireUserInboundEventTriggered(event) }
            return false
        case .drop:
            return false
        }
    }

    func fail(_ error: XferError) {
        let channel = self.channel
        channel.eventLoop.execute { channel.pipeline.fireUserInboundEventTriggered(ConnectionFailEvent(error: error)) }
    }

    func missed(since: UInt64, count: UInt64) {
        // Only `xfer listen` resumes (plain clients have no way to ask); it gets a `missed` message.
        guard !self.plain else { return }
        let buffer = WireMessage.missed(since: since, count: count).encoded(allocator: self.channel.allocator)
        self.channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .binary, data: buffer), promise: nil)
    }
}

/// A connection's `OutboundQueue` behind a lock: texts are routed to it from any thread.
final class OutboundQueueBox: Sendable {
    private let queue: Mutex<OutboundQueue>

    /// A queue with the server's limits.
    init(maxBytes: Int, maxTexts: Int) {
        self.queue = Mutex(OutboundQueue(maxBytes: maxBytes, maxTexts: maxTexts))
    }

    func enqueue(bytes: Int) -> OutboundQueue.EnqueueAction {
        self.queue.withLock { $0.enqueue(bytes: bytes) }
    }

    func written(bytes: Int) {
        self.queue.withLock { $0.written(bytes: bytes) }
    }
}

/// Sent down a connection's pipeline to end it with an error (from a router that cannot serve it).
struct ConnectionFailEvent: Sendable {
    /// Why; its code decides the close code.
    var error: XferError
}

/// Sent down a connection's pipeline when it passed its outbound limit: close it as a slow consumer.
struct SlowConsumerEvent: Sendable {
    /// Bytes of texts queued when the limit was hit.
    var queuedBytes: Int
    /// Texts queued when the limit was hit.
    var queuedTexts: Int
}
