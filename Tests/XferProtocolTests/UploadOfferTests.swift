import Testing
import XferProtocol

/// `UploadOffer` from and to the fields of an `offer` message: every refusal keeps its code and text.
@Suite struct UploadOfferTests {
    static let maxBlockSize = 16 << 20
    static let maxFileSize: UInt64 = 1 << 30

    static let valid: [String: String] = [
        "upload": "0123456789abcdef0123456789abcdef", "name": "report.tar", "size": "12345",
        "block_size": "1048576", "mtime": "1700000000123456789", "kind": "file",
    ]

    func parse(_ fields: [String: String]) throws(XferError) -> UploadOffer {
        try UploadOffer(fields: fields, maxBlockSize: Self.maxBlockSize, maxFileSize: Self.maxFileSize)
    }

    func refusal(_ fields: [String: String]) -> XferError? {
        do {
            _ = try self.parse(fields)
            return nil
        } catch {
            return error
        }
    }

    func with(_ key: String, _ value: String?) -> [String: String] {
        var fields = Self.valid
        fields[key] = value
        return fields
    }

    @Test func aValidOfferParsesIntoTypedFields() throws {
        let offer = try self.parse(Self.valid)
        #expect(
            offer
                == UploadOffer(
                    id: "0123456789abcdef0123456789abcdef",
                    name: "report.tar",
                    size: 12345,
                    blockSize: 1 << 20,
                    mtime: "1700000000123456789",
                    kind: .file
                )
        )
    }

    @Test func encodingAndParsingRoundTrip() throws {
        let offer = try self.parse(Self.valid)
        #expect(offer.fields == Self.valid)
        #expect(try self.parse(offer.fields) == offer)
        let stream = UploadOffer(
            id: "fedcba9876543210",
            name: "cam1.ts",
            size: nil,
            blockSize: 4096,
            mtime: "",
            kind: .stream
        )
        #expect(stream.fields["size"] == nil)
        #expect(stream.fields["kind"] == "stream")
        #expect(try self.parse(stream.fields) == stream)
    }

    @Test func theNameIsMadeSafe() throws {
        #expect(try self.parse(self.with("name", "../../etc/passwd")).name == "passwd")
        let error = self.refusal(self.with("name", ".."))
        #expect(error?.code == .badName)
        #expect(self.refusal(self.with("name", nil))?.code == .badName)
    }

    @Test(arguments: [
        nil, "", "0123456789abcde", "0123456789ABCDEF", "0123456789abcdeg", "../0123456789abcdef",
        String(repeating: "a", count: 65),
    ])
    func badUploadIDsAreRefused(_ id: String?) {
        let error = self.refusal(self.with("upload", id))
        #expect(error?.code == .protocolError)
        #expect(error?.message == "offer needs an upload id of 16-64 lowercase hex digits")
    }

    @Test func uploadIDsOf16To64HexDigitsAreAccepted() throws {
        #expect(try self.parse(self.with("upload", String(repeating: "0", count: 16))).id.count == 16)
        #expect(try self.parse(self.with("upload", String(repeating: "f", count: 64))).id.count == 64)
    }

    @Test(arguments: [nil, "", "abc", "4095", "16777217", "-1"])
    func blockSizesOutside4KiBTo16MiBAreRefused(_ blockSize: String?) {
        let error = self.refusal(self.with("block_size", blockSize))
        #expect(error?.code == .protocolError)
        #expect(error?.message == "offer needs block_size between 4096 and 16777216")
    }

    @Test func blockSizesAtTheLimitsAreAccepted() throws {
        #expect(try self.parse(self.with("block_size", "4096")).blockSize == 4096)
        #expect(try self.parse(self.with("block_size", "16777216")).blockSize == 16 << 20)
    }

    @Test func aDeclaredSizeOverTheLimitIsRefusedAsFileTooLarge() throws {
        let error = self.refusal(self.with("size", String(Self.maxFileSize + 1)))
        #expect(error?.code == .fileTooLarge)
        #expect(
            error?.message == "report.tar is 1073741825 bytes, over the server's limit of 1073741824 (--max-file-size)"
        )
        #expect(try self.parse(self.with("size", String(Self.maxFileSize))).size == Self.maxFileSize)
    }

    @Test func aMissingSizeMeansAStreamOfUnknownLengthAndAnUnreadableOneIsRefused() throws {
        #expect(try self.parse(self.with("size", nil)).size == nil)
        #expect(self.refusal(self.with("size", "lots"))?.code == .protocolError)
    }

    @Test func kindAndMtimeDefault() throws {
        #expect(try self.parse(self.with("kind", "stream")).kind == .stream)
        #expect(try self.parse(self.with("kind", nil)).kind == .file)
        #expect(try self.parse(self.with("kind", "pipe")).kind == .file)
        #expect(try self.parse(self.with("mtime", nil)).mtime == "")
    }
}
