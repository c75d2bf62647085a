import XferProtocol

/// libFuzzer entry point for the text decoders: the first byte picks one, the rest is its input. 0: timezone,
/// 1: file name sanitiser, 2: offer fields (`key=value` lines), 3: close frame payload, 4: offer numbers.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFields(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let input = UnsafeBufferPointer(start: data + 1, count: size - 1)
    let text = String(decoding: input, as: UTF8.self)
    switch data[0] % 5 {
    case 0:
        if let zone = try? ClientTimezone.validate(text, isKnownZone: { $0 == "Europe/Paris" }) {
            precondition(!zone.isEmpty)
        }
    case 1:
        if let name = try? SafeFileName.sanitize(text) {
            precondition(!name.contains("/") && name != "." && name != "..", "unsafe name \(name)")
        }
    case 2:
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
        }
        if let offer = try? UploadOffer(fields: fields, maxBlockSize: 1 << 20, maxFileSize: 1 << 40) {
            let again = try? UploadOffer(fields: offer.fields, maxBlockSize: 1 << 20, maxFileSize: 1 << 40)
            precondition(again == offer, "offer did not survive its own encoding: \(offer)")
        }
    case 3:
        if case .valid(let code?, _) = ClosePayload.parse(input) {
            precondition(ClosePayload.mayBeSent(code))
        }
    default:
        if let value = UploadOffer.decimal(text) { precondition(String(value) == text) }
    }
    return 0
}
