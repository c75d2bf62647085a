import Foundation
import XferEvents
import XferProtocol
import XferTransport

/// Reads JSON-lines commands on `serve`'s stdin and answers each with an event.
///
/// A bad line gets an `error` event (code `bad_command`) and the server carries on; EOF (or /dev/null) only
/// stops this reader.
struct ServeStdinCommands: Sendable {
    let registry: ClientRegistry
    let sink: FileDescriptorSink

    func start() {
        let thread = Thread {
            while let line = readLine(strippingNewline: true) {
                self.handle(line)
            }
        }
        thread.start()
    }

    func handle(_ line: String) {
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty else { return }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(trimmed.utf8))) as? [String: Any] else {
            return self.fail("stdin line is not a JSON object: \(trimmed.prefix(80))")
        }
        let ref = (object["ref"] as? String) ?? (object["ref"] as? NSNumber)?.stringValue
        guard let command = object["cmd"] as? String else {
            return self.fail("stdin command has no \"cmd\": use send, broadcast or clients", ref: ref)
        }
        switch command {
        case "send":
            guard let text = object["text"] as? String else {
                return self.fail("send needs \"text\": {\"cmd\":\"send\",\"to\":\"NAME\",\"text\":\"...\"}", ref: ref)
            }
            let target: RelayTarget
            let shown: String
            if let number = object["to"] as? NSNumber, let id = Int(exactly: number.doubleValue) {
                target = .client(id)
                shown = String(id)
            } else if let to = object["to"] as? String, !to.isEmpty {
                if let id = Int(to) { target = .client(id) } else { target = .name(to) }
                shown = to
            } else {
                return self.fail("send needs \"to\": a client id or a listener name", ref: ref)
            }
            guard let result = self.registry.relay(text, from: "server", to: target) else {
                return self.sink.emit(
                    .sent(
                        command: "send",
                        to: shown,
                        delivered: 0,
                        held: 0,
                        ref: ref,
                        failure: (
                            XferError.Code.noListener.rawValue,
                            "no listener or plain client \"\(shown)\" is connected or held; see {\"cmd\":\"clients\"}"
                        )
                    )
                )
            }
            self.sink.emit(.sent(command: "send", to: shown, delivered: result.delivered, held: result.held, ref: ref))
        case "broadcast":
            guard let text = object["text"] as? String else {
                return self.fail("broadcast needs \"text\": {\"cmd\":\"broadcast\",\"text\":\"...\"}", ref: ref)
            }
            let result =
                self.registry.relay(text, from: "server", to: .allListeners) ?? RelayResult(delivered: 0, held: 0)
            self.sink.emit(
                .sent(command: "broadcast", to: nil, delivered: result.delivered, held: result.held, ref: ref)
            )
        case "clients":
            let clients = self.registry.listing()
            var json: [UInt8] = [UInt8(ascii: "[")]
            for (index, client) in clients.enumerated() {
                if index > 0 { json.append(UInt8(ascii: ",")) }
                json.append(contentsOf: #"{"client":\#(client.id),"peer":"#.utf8)
                JSONLineWriter.appendString(client.peer, to: &json)
                json.append(contentsOf: #","role":"#.utf8)
                JSONLineWriter.appendString(client.role, to: &json)
                json.append(contentsOf: #","timezone":"#.utf8)
                JSONLineWriter.appendString(client.timezone, to: &json)
                if let name = client.name {
                    json.append(contentsOf: #","name":"#.utf8)
                    JSONLineWriter.appendString(name, to: &json)
                }
                json.append(UInt8(ascii: "}"))
            }
            json.append(UInt8(ascii: "]"))
            self.sink.emit(.clients(count: clients.count, listJSON: String(decoding: json, as: UTF8.self), ref: ref))
        default:
            self.fail("unknown command \"\(command.prefix(40))\": use send, broadcast or clients", ref: ref)
        }
    }

    private func fail(_ message: String, ref: String? = nil) {
        self.sink.emit(.error(code: XferError.Code.badCommand.rawValue, message: message, ref: ref))
    }
}
