import Testing
import XferProtocol

/// Checks which timezones a client may send as its first message, and that all else is `bad_timezone`.
@Suite struct ClientTimezoneTests {
    /// A stand-in for the zone database: knows a handful of names.
    static let knownZones: Set<String> = ["Europe/Paris", "America/Los_Angeles", "Etc/GMT+5", "America/Port-au-Prince"]

    static func isKnown(_ name: String) -> Bool { Self.knownZones.contains(name) }

    static func validationError(_ text: String, isKnownZone: (String) -> Bool = isKnown) -> XferError? {
        do {
            _ = try ClientTimezone.validate(text, isKnownZone: isKnownZone)
            return nil
        } catch {
            return error
        }
    }

    @Test func utcAndZAreAcceptedAsUTC() throws {
        #expect(try ClientTimezone.validate("UTC", isKnownZone: { _ in false }) == "UTC")
        #expect(try ClientTimezone.validate("Z", isKnownZone: { _ in false }) == "UTC")
    }

    @Test(arguments: ["+05:30", "-08:00", "+14:00", "-14:00", "+00:00", "-00:00", "+13:59"])
    func offsetsWithinFourteenHoursAreAcceptedAsGiven(_ offset: String) throws {
        #expect(try ClientTimezone.validate(offset, isKnownZone: { _ in false }) == offset)
    }

    @Test(arguments: Array(knownZones))
    func ianaNamesKnownToTheDatabaseAreAccepted(_ name: String) throws {
        #expect(try ClientTimezone.validate(name, isKnownZone: Self.isKnown) == name)
    }

    @Test(arguments: [
        "+15:00", "+14:01", "-15:00", "+05:60", "+5:30", "05:30", "+0530", "+05:3", "+05-30", "+ab:cd", "±05:30",
        "+05:30 ",
    ])
    func malformedOrOutOfRangeOffsetsAreRejected(_ offset: String) {
        #expect(Self.validationError(offset, isKnownZone: { _ in true })?.code == .badTimezone)
    }

    @Test(arguments: [
        "", "../etc/passwd", "Europe/../etc/passwd", "/etc/passwd", "Europe/Paris/", "Europe/ Paris", "Europe/Paris\n",
        "Europe/Paris\u{0}", "Europe\tParis", "europe/paris", "utc", "Éurope/Paris", "Europe/Pàris", "Europe\\Paris",
    ])
    func hostileOrMalformedNamesAreRejectedEvenIfTheDatabaseWouldSayYes(_ name: String) {
        #expect(Self.validationError(name, isKnownZone: { _ in true })?.code == .badTimezone)
    }

    @Test func namesUnknownToTheDatabaseAreRejected() {
        #expect(Self.validationError("Mars/Olympus_Mons")?.code == .badTimezone)
        #expect(Self.validationError("Europe/Pariss")?.code == .badTimezone)
    }

    @Test func namesLongerThanTheLimitAreRejected() {
        let atLimit = "A" + String(repeating: "b", count: ClientTimezone.maxLength - 1)
        #expect(Self.validationError(atLimit, isKnownZone: { _ in true }) == nil)
        #expect(Self.validationError(atLimit + "c", isKnownZone: { _ in true })?.code == .badTimezone)
    }

    @Test func theDatabaseIsNotConsultedForSyntacticallyBadNames() {
        var asked: [String] = []
        _ = Self.validationError("../etc/passwd") {
            asked.append($0)
            return true
        }
        _ = Self.validationError("Europe/ Paris") {
            asked.append($0)
            return true
        }
        #expect(asked.isEmpty)
    }

    @Test func theErrorMessageSaysWhatIsAcceptedAndShortensLongInput() throws {
        let error = try #require(Self.validationError(String(repeating: "X", count: 500)))
        #expect(error.message.contains("Europe/Paris"))
        #expect(error.message.contains("UTC"))
        #expect(error.message.contains("+05:30"))
        #expect(error.message.count < 250)
    }
}
