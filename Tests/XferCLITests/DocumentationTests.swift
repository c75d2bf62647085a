import Foundation
import Testing

/// The examples run, and the man page and help agree: docs drift unless a test reads them.
@Suite(.timeLimit(.minutes(3)))
struct DocumentationTests {
    static let examples: [String] = {
        let directory = TestPaths.root.appendingPathComponent("examples")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { $0.hasSuffix(".sh") }.sorted()
    }()

    @Test(arguments: DocumentationTests.examples)
    func exampleRunsSuccessfully(_ name: String) async throws {
        let path = TestPaths.root.appendingPathComponent("examples/\(name)").path
        let result = try await runCommand(
            [path],
            executable: "/bin/bash",
            environment: ["XFER": TestPaths.binary.path],
            timeout: 60
        )
        #expect(
            result.status == 0,
            "examples/\(name) failed:\n\(result.lines.joined(separator: "\n"))\n\(result.stderr)"
        )
    }

    /// examples/cluster/run.sh starts PostgreSQL, 3 instances and HAProxy; `--self-check` sends a text and uploads
    /// a file through HAProxy, checks them and stops everything.
    @Test(
        .enabled(
            if: ClusterTools.enabled,
            "needs PostgreSQL and HAProxy (apt-get install postgresql haproxy); with CI set a missing tool is a failure"
        )
    )
    func clusterExampleSelfCheckPasses() async throws {
        try ClusterTools.requireTools()
        let path = TestPaths.root.appendingPathComponent("examples/cluster/run.sh").path
        let result = try await runCommand(
            [path, "--self-check"],
            executable: "/bin/bash",
            environment: ["XFER": TestPaths.binary.path],
            timeout: 150
        )
        #expect(
            result.status == 0,
            "examples/cluster/run.sh --self-check failed:\n\(result.lines.joined(separator: "\n"))\n\(result.stderr)"
        )
        #expect(result.lines.contains("self-check: ok"))
    }

    @Test func examplesAreIndexed() throws {
        let index = try String(contentsOf: TestPaths.root.appendingPathComponent("examples/README.md"), encoding: .utf8)
        for name in Self.examples + ["cluster/run.sh", "cluster/haproxy.cfg"] {
            #expect(index.contains(name), "examples/README.md does not mention \(name)")
        }
    }

    @Test(arguments: ["serve", "send", "listen", "upload"])
    func manPageDocumentsEveryOption(_ command: String) async throws {
        let help = try await runCommand([command, "--help"])
        #expect(help.status == 0)
        let page = try String(contentsOf: TestPaths.root.appendingPathComponent("man/xfer.1"), encoding: .utf8)
        let options = Set(
            help.lines.joined(separator: "\n").matches(of: /--([a-z][a-z0-9-]+)/).map { String($0.output.1) }
        )
        #expect(!options.isEmpty)
        for option in options.sorted() where option != "help" {
            // mdoc writes options as `Fl -name` (a leading dash after Fl) or with an escaped \- form.
            let found =
                page.contains("Fl \(option)") || page.contains("Fl -\(option)")
                || page.contains("\\-\\-\(option)") || page.contains("--\(option)")
            #expect(found, "man/xfer.1 does not document \(command) --\(option)")
        }
        #expect(page.contains(command), "man/xfer.1 has no section for \(command)")
    }

    @Test func versionAndHelpWork() async throws {
        let version = try await xfer("--version")
        #expect(version.status == 0)
        #expect(version.lines.first?.isEmpty == false)
        let help = try await xfer("--help")
        #expect(help.status == 0)
        for command in ["serve", "send", "listen", "upload"] {
            #expect(help.lines.contains { $0.contains(command) })
        }
    }
}
