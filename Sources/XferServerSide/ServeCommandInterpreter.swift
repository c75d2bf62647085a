import Foundation
import NIOCore
import XferEvents
import XferProtocol

/// Reads JSON-lines commands on `serve`'s stdin and answers each with an event: `send` and `broadcast` with
/// `sent`, `clients` with `clients`.
///
/// A bad line gets an `error` event (code `bad_command`) and the server carries on; EOF (or /dev/null) only
/// stops the reader. Commands are answered in the order they were read.
public struct ServeCommandInterpreter: Sendable {
    /// One understood command.
    public enum Command: Sendable, Equatable {
        /// `{"cmd":"send","to":...,"text":...}`: `shown` is the target as the `sent` event repeats it.
        case send(to: RelayTarget, shown: String, text: String)
        /// `{"cmd":"broadcast","text":...}`.
        case broadcast(text: String)
        /// `{"cmd":"clients"}`.
        case clients
    }

    /// A line's command and its `ref` (echoed in the answer so that a script can match them).
    public struct Parsed: Sendable, Equatable {
        public var command: Command
        public var ref: String?
    }

    /// A line that is not a command, with the `ref` it had if any.
    public struct Refusal: Error, Sendable, Equatable {
        public var message: String
        public var ref: String?
    }

    let registry: ClientRegistry
    let router: any MessageRouter
    let sink: any EventSink
    let loop: EventLoop

    /// An interpreter acting on `registry` and `router`, answering into `sink`; routing futures run on `loop`.
    public init(registry: ClientRegistry, router: any MessageRouter, sink: any EventSink, loop: EventLoop) {
        self.registry = registry
        self.router = router
        self.sink = sink
        self.loop = loop
    }

    /// Reads stdin on a thread of its own until EOF, handling each line before the next.
    public func start() {
        let thread = Thread {
            while let line = readLine(strippingNewline: true) {
                try? self.handle(line).wait()
            }
        }
        thread.start()
    }

    /// Handles one line; the future completes once its answer was emitted.
    public func handle(_ line: String) -> EventLoopFuture<Void> {
        let parsed: Parsed
        switch Self.parse(line) {
        case .success(nil):
            return self.loop.makeSucceededVoidFuture()
        case .success(let command?):
            parsed = command
        case .failure(let refusal):
            self.sink.emit(.error(code: XferError.Code.badCommand.rawValue, message: refusal.message, ref: refusal.ref))
            return self.loop.makeSucceededVoidFuture()
        }
        let ref = parsed.ref
        let sink = self.sink
        switch parsed.command {
        case .send(let target, let shown, let text):
            return self.router.route(text, from: "server", to: target, on: self.loop).map { result in
                guard let result else {
                    return sink.emit(
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
                sink.emit(.sent(command: "send", to: shown, delivered: result.delivered, held: result.held, ref: ref))
            }
        case .broadcast(let text):
            return self.router.route(text, from: "server", to: .allListeners, on: self.loop).map { result in
                let result = result ?? RelayResult(delivered: 0, held: 0)
                sink.emit(
                    .sent(command: "broadcast", to: nil, delivered: result.delivered, held: result.held, ref: ref)
                )
            }
        case .clients:
            let clients = self.registry.listing()
            self.sink.emit(.clients(count: clients.count, listJSON: Self.listJSON(clients), ref: ref))
            return self.loop.makeSucceededVoidFuture()
        }
    }

    /// Reads one line: nil for a blank line, else the command or why it is not one.
    public static func parse(_ line: String) -> Result<Parsed?, Refusal> {
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty else { return .success(nil) }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(trimmed.utf8))) as? [String: Any] else {
            return .failure(Refusal(message: "stdin line is not a JSON object: \(trimmed.prefix(80))"))
        }
        let ref = (object["ref"] as? String) ?? (object["ref"] as? NSNumber)?.stringValue
        func refuse(_ message: String) -> Result<Parsed?, Refusal> { .failure(Refusal(message: message, ref: ref)) }
        guard let command = object["cmd"] as? String else {
            return refuse("stdin command has no \"cmd\": use send, broadcast or clients")
        }
        switch command {
        case "send":
            guard let text = object["text"] as? String else {
                return refuse("send needs \"text\": {\"cmd\":\"send\",\"to\":\"NAME\",\"text\":\"...\"}")
            }
            if let number = object["to"] as? NSNumber, let id = Int(exactly: number.doubleValue) {
                return .success(Parsed(command: .send(to: .client(id), shown: String(id), text: text), ref: ref))
            }
            guard let to = object["to"] as? String, !to.isEmpty else {
                return refuse("send needs \"to\": a client id or a listener name")
            }
            let target: RelayTarget = Int(to).map(RelayTarget.client) ?? .name(to)
            return .success(Parsed(command: .send(to: target, shown: to, text: text), ref: ref))
        case "broadcast":
            guard let text = object["text"] as? String else {
                return refuse("broadcast needs \"text\": {\"cmd\":\"broadcast\",\"text\":\"...\"}")
            }
            return .success(Parsed(command: .broadcast(text: text), ref: ref))
        case "clients":
            return .success(Parsed(command: .clients, ref: ref))
        default:
            return refuse("unknown command \"\(command.prefix(40))\": use send, broadcast or clients")
        }
    }

    /// The `clients` array of the `clients` event.
    static func listJSON(_ clients: [ClientRegistry.ClientInfo]) -> String {
        var json: [UInt8] = [UInt8(ascii: "[")]
        for (index, client) in clients.enumerated() {
            if index > 0 { json.append(UInt8(ascii: ",")) }
            json.append(contentsOf: #"{"client":\#(client.id),"peer":"#.utf8)
            JSONLineWriter.appendString(client.peer, to: &json)
            json.append(contentsOf: #","role":"#.utf8)
            JSONLineWriter.appendString(client.role.rawValue, to: &json)
            json.append(contentsOf: #","timezone":"#.utf8)
            JSONLineWriter.appendString(client.timezone, to: &json)
            if let name = client.name {
                json.append(contentsOf: #","name":"#.utf8)
                JSONLineWriter.appendString(name, to: &json)
            }
            json.append(UInt8(ascii: "}"))
        }
        json.append(UInt8(ascii: "]"))
        return String(decoding: json, as: UTF8.self)
    }
}
