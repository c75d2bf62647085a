import Testing
import XferProtocol

/// Feeds hostile file names to `SafeFileName` and checks that only one plain, visible component comes out.
@Suite struct SafeFileNameTests {
    static func sanitized(_ name: String) -> String? {
        try? SafeFileName.sanitize(name)
    }

    static func sanitizeError(_ name: String) -> XferError? {
        do {
            _ = try SafeFileName.sanitize(name)
            return nil
        } catch {
            return error
        }
    }

    @Test func ordinaryNamesAreKept() {
        #expect(Self.sanitized("report.tar.gz") == "report.tar.gz")
        #expect(Self.sanitized("photo 2024-01-01 (1).jpg") == "photo 2024-01-01 (1).jpg")
        #expect(Self.sanitized("日本語.txt") == "日本語.txt")
        #expect(Self.sanitized("a..b") == "a..b")
    }

    @Test func directoryPartsAreDropped() {
        #expect(Self.sanitized("../../etc/passwd") == "passwd")
        #expect(Self.sanitized("/etc/shadow") == "shadow")
        #expect(Self.sanitized("C:\\Users\\me\\x.txt") == "x.txt")
        #expect(Self.sanitized("..\\..\\boot.ini") == "boot.ini")
        #expect(Self.sanitized("dir/sub/") == "sub")
    }

    @Test(arguments: ["", ".", "..", "...", "/", "//", "../..", "dir/..", " ", " . ", "\\", ". .", ". ..", " .. . "])
    func namesWithNothingUsableAreBadName(_ name: String) {
        #expect(Self.sanitizeError(name)?.code == .badName, "\"\(name)\" gave \(Self.sanitized(name) ?? "an error")")
    }

    @Test func leadingDotsAreRemovedSoNothingIsHidden() {
        #expect(Self.sanitized(".bashrc") == "bashrc")
        #expect(Self.sanitized("...hidden") == "hidden")
        #expect(Self.sanitized(".xfer-partial") == "xfer-partial")
    }

    @Test(arguments: [". .bashrc", " . .xfer-partial", ". . .ssh", ".. ..x"])
    func dotsAndSpacesMixedAtTheStartNeverLeaveAHiddenName(_ name: String) {
        let result = Self.sanitized(name)
        #expect(result != nil)
        #expect(result?.hasPrefix(".") == false, "\"\(name)\" became \"\(result ?? "")\"")
        #expect(result?.hasPrefix(" ") == false, "\"\(name)\" became \"\(result ?? "")\"")
    }

    @Test func controlAndBidiCharactersAreReplaced() {
        #expect(Self.sanitized("a\nb\rc\td") == "a_b_c_d")
        #expect(Self.sanitized("nul\u{0}byte") == "nul_byte")
        #expect(Self.sanitized("del\u{7F}c1\u{85}") == "del_c1_")
        #expect(Self.sanitized("invoice\u{202E}txt.exe") == "invoice_txt.exe")
        #expect(Self.sanitized("x\u{2066}y\u{2069}") == "x_y_")
    }

    @Test func surroundingSpacesAreTrimmed() {
        #expect(Self.sanitized("  name.txt  ") == "name.txt")
        #expect(Self.sanitized(" . name") == "name")
    }

    @Test func longNamesAreCutToTheLimitKeepingTheExtension() throws {
        let long = try #require(Self.sanitized(String(repeating: "a", count: 300) + ".txt"))
        #expect(long.utf8.count == SafeFileName.maxBytes)
        #expect(long.hasSuffix(".txt"))
        let wide = try #require(Self.sanitized(String(repeating: "日", count: 130) + ".tar.gz"))
        #expect(wide.utf8.count <= SafeFileName.maxBytes)
        #expect(wide.hasSuffix(".tar.gz"))
        #expect(wide.dropLast(7).allSatisfy { $0 == "日" }, "cut on a character boundary")
        #expect(Self.sanitized(String(repeating: "b", count: 240)) == String(repeating: "b", count: 240))
    }

    @Test(arguments: [
        "../" + String(repeating: "x", count: 1000), String(repeating: "/", count: 1000) + "a", "\u{0}\u{1}\u{2}",
        String(repeating: "🙂", count: 200), "\\\\server\\share\\.", "a/\u{202E}/b",
    ])
    func resultIsAlwaysOneVisibleComponentWithinTheLimit(_ name: String) {
        guard let result = Self.sanitized(name) else { return }
        #expect(!result.isEmpty)
        #expect(!result.contains("/"))
        #expect(!result.contains("\\"))
        #expect(!result.hasPrefix("."))
        #expect(result.utf8.count <= SafeFileName.maxBytes)
        #expect(!result.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F })
    }

    /// Found by FuzzFields: a cut that ends in spaces gave a name that sanitised again to another name, so an
    /// offer did not survive its own encoding.
    @Test(arguments: [
        "\u{FFFD}:" + String(repeating: "\u{FFFD}", count: 77) + String(repeating: " ", count: 100),
        String(repeating: "a", count: 239) + "  b", String(repeating: "\u{301}", count: 200) + ".txt",
        String(repeating: "e\u{301}\u{302}\u{303}", count: 1) + String(repeating: "\u{304}", count: 200) + ".txt",
    ])
    func sanitisingIsIdempotentAfterACut(_ name: String) throws {
        guard let once = Self.sanitized(name) else { return }
        #expect(Self.sanitized(once) == once)
        #expect(!once.hasSuffix(" "))
        #expect(!once.hasPrefix("."))
        #expect(once.utf8.count <= SafeFileName.maxBytes)
    }

    @Test func numberedVariantsKeepTheExtension() {
        #expect(SafeFileName.numbered("report.pdf", 0) == "report.pdf")
        #expect(SafeFileName.numbered("report.pdf", 1) == "report (1).pdf")
        #expect(SafeFileName.numbered("backup.tar.gz", 2) == "backup (2).tar.gz")
        #expect(SafeFileName.numbered("README", 3) == "README (3)")
        #expect(SafeFileName.numbered("a.b.c", 1) == "a.b (1).c")
        #expect(SafeFileName.numbered(".tar.gz", 1) == ".tar (1).gz")
    }
}
