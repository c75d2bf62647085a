import Foundation
import Testing

/// `make install` and `make uninstall` into a temporary DESTDIR: the installed binary runs, its man pages format,
/// and its bash completion completes. The binary under test stands in for the release build (`XFER_BINARY`),
/// which takes minutes; every other step is the one users run.
@Suite(.timeLimit(.minutes(3)))
struct InstallTests {
    static let make = "/usr/bin/make"

    static let installed = [
        "bin/xfer", "share/man/man1/xfer.1", "share/man/man7/xfer-protocol.7",
        "share/bash-completion/completions/xfer", "share/zsh/site-functions/_xfer",
        "share/fish/vendor_completions.d/xfer.fish",
    ]

    @Test func installBuildsAStaticStrippedReleaseBinaryUnlessGivenOne() async throws {
        let plan = try await runCommand(
            ["-n", "-C", TestPaths.root.path, "install", "PREFIX=/opt/xfer"],
            executable: Self.make
        )
        #expect(plan.status == 0, "\(plan.stderr)")
        let text = plan.lines.joined(separator: "\n")
        #expect(text.contains("build -c release --static-swift-stdlib --product xfer"), "\(text)")
        #expect(text.contains("strip .build/install/xfer"), "\(text)")
        #expect(text.contains("/opt/xfer/share/man/man7/xfer-protocol.7"), "\(text)")
    }

    @Test func installedBinaryManPagesAndCompletionWorkAndUninstallRemovesThem() async throws {
        let destination = try TestPaths.temporaryDirectory()
        let stage = try TestPaths.temporaryDirectory()
        defer {
            try? FileManager.default.removeItem(at: destination)
            try? FileManager.default.removeItem(at: stage)
        }
        let variables = [
            "PREFIX=/usr/local", "DESTDIR=\(destination.path)", "XFER_BINARY=\(TestPaths.binary.path)",
            "STAGE=\(stage.path)",
        ]
        let install = try await runCommand(
            ["-C", TestPaths.root.path, "install"] + variables,
            executable: Self.make,
            timeout: 120
        )
        try #require(install.status == 0, "make install failed: \(install.lines.suffix(5)) \(install.stderr)")
        let prefix = destination.appendingPathComponent("usr/local")
        for path in Self.installed {
            #expect(FileManager.default.fileExists(atPath: prefix.appendingPathComponent(path).path), "\(path)")
        }

        let binary = prefix.appendingPathComponent("bin/xfer").path
        let version = try await runCommand(["--version"], executable: binary)
        #expect(version.status == 0)
        #expect(version.lines.first?.isEmpty == false)
        let server = try await TestServer()
        let sent = try await runCommand(
            ["send", "--server", server.url, "from the installed binary"],
            executable: binary
        )
        #expect(sent.status == 0, "\(sent.stderr)")
        await server.stop()

        for (page, heading) in [("share/man/man1/xfer.1", "EXIT STATUS"), ("share/man/man7/xfer-protocol.7", "NAME")] {
            let formatted = try await runCommand(
                ["man", "-l", prefix.appendingPathComponent(page).path],
                executable: "/usr/bin/env",
                environment: ["MANPAGER": "cat", "MANWIDTH": "100"]
            )
            #expect(formatted.status == 0, "man -l \(page): \(formatted.stderr)")
            #expect(formatted.lines.contains { $0.contains(heading) }, "man -l \(page) has no \(heading)")
        }

        // The completion function, as bash-completion would call it for `xfer se<TAB>` and `xfer send --ti<TAB>`.
        let completion = prefix.appendingPathComponent("share/bash-completion/completions/xfer").path
        let script = """
            source "$1"
            complete_words() {
                COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
                COMPREPLY=(); _xfer xfer "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
                printf '%s\\n' "${COMPREPLY[@]}"
            }
            complete_words xfer se
            complete_words xfer send --ti
            """
        let completed = try await runCommand(["-c", script, "bash", completion], executable: "/bin/bash")
        #expect(completed.status == 0, "\(completed.stderr)")
        #expect(completed.lines.contains("serve") && completed.lines.contains("send"), "\(completed.lines)")
        #expect(completed.lines.contains("--timezone"), "\(completed.lines)")

        let uninstall = try await runCommand(
            ["-C", TestPaths.root.path, "uninstall"] + variables,
            executable: Self.make
        )
        #expect(uninstall.status == 0, "\(uninstall.stderr)")
        let left = FileManager.default.enumerator(atPath: destination.path)?.compactMap { $0 as? String } ?? []
        let files = left.filter { path in
            var isDirectory: ObjCBool = false
            let exists = FileManager.default.fileExists(
                atPath: destination.appendingPathComponent(path).path,
                isDirectory: &isDirectory
            )
            return exists && !isDirectory.boolValue
        }
        #expect(files.isEmpty, "make uninstall left \(files)")
    }
}
