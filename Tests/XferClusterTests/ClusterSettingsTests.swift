import Testing
import XferProtocol

@testable import XferCluster

@Suite struct ClusterSettingsTests {
    @Test func aFullURLGivesEveryPart() throws {
        let settings = try ClusterSettings(
            url: "postgres://xfer:s3cret@db.example:6543/bus",
            instance: "xfer-1",
            environment: [:]
        )
        #expect(settings.host == "db.example")
        #expect(settings.port == 6543)
        #expect(settings.user == "xfer")
        #expect(settings.password == "s3cret")
        #expect(settings.database == "bus")
        #expect(settings.displayURL == "postgres://xfer@db.example:6543/bus")
    }

    @Test func defaultsFollowPsql() throws {
        let settings = try ClusterSettings(
            url: "postgresql://postgres@[::1]",
            instance: "a",
            environment: ["PGPASSWORD": "pw"]
        )
        #expect(settings.host == "::1")
        #expect(settings.port == 5432)
        #expect(settings.database == "postgres")
        #expect(settings.password == "pw")
        #expect(settings.displayURL == "postgres://postgres@[::1]:5432/postgres")
    }

    @Test(arguments: [
        "mysql://u@h/db", "postgres://h:5432/db", "postgres://u@:5432/db", "not a url", "postgres://u@h:0/db",
    ])
    func badURLsAreUsageErrorsWithoutThePassword(_ url: String) {
        #expect(throws: XferError.self) { try ClusterSettings(url: url, instance: "a", environment: [:]) }
        do {
            _ = try ClusterSettings(url: url, instance: "a", environment: [:])
        } catch {
            #expect(error.code == .usage)
        }
    }

    @Test func passwordsNeverAppearInMessages() {
        #expect(ClusterSettings.redact("postgres://u:pw@h/db") == "postgres://u:***@h/db")
        #expect(ClusterSettings.redact("postgres://u@h/db") == "postgres://u@h/db")
        do {
            _ = try ClusterSettings(url: "mysql://u:topsecret@h/db", instance: "a", environment: [:])
        } catch {
            #expect(!error.message.contains("topsecret"))
        }
    }

    @Test(arguments: ["", "has space", String(repeating: "x", count: 201)])
    func badInstanceNamesAreRefused(_ name: String) {
        #expect(throws: XferError.self) { try ClusterSettings(url: "postgres://u@h/db", instance: name) }
    }
}
