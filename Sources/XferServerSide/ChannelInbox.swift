import NIOCore
import NIOWebSocket
import Synchronization
import XferProtocol

/// A connection's channel as a `TextInbox`: plain clients get a JSON text frame, `xfer` clients a `deliver`
/// message.
struct ChannelInbox: TextInbox {
    let channel: Channel
    let plain: Bool

    func deliver(seq: UInt64, from: String, text: String) {
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
        self.channel.writeAndFlush(WebSocketFrame(fin: true, opcode: opcode, data: buffer), promise: nil)
    }

    func missed(since: UInt64, count: UInt64) {
        // Only `xfer listen` resumes (plain clients have no way to ask); it gets a `missed` message.
        guard !self.plain else { return }
        let buffer = WireMessage.missed(since: since, count: count).encoded(allocator: self.channel.allocator)
        self.channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .binary, data: buffer), promise: nil)
    }
}
