/// Reduces a file name from a client to a safe name for one file inside the server's directory.
///
/// Untrusted input: whatever it holds, the result is a single path component with no `/`, no NUL or control
/// characters, not `.` or `..`, not hidden-dot-only, and at most `maxBytes` UTF-8 bytes. Directory parts are
/// dropped (`../../etc/passwd` becomes `passwd`, `C:\\dir\\x.txt` becomes `x.txt`). Symlinks are the file
/// store's concern: this function never touches the file system.
public enum SafeFileName {
    /// Longest name kept, in bytes: ext4 and most file systems allow 255; the rest leaves room for ` (999)`.
    public static let maxBytes = 240

    /// The safe form of `name`, or a `bad_name` error when nothing usable is left.
    public static func sanitize(_ name: String) throws(XferError) -> String {
        // Keep only the last component of either kind of path separator.
        let lastComponent = name.split(whereSeparator: { $0 == "/" || $0 == "\\" }).last.map(String.init) ?? ""
        var scalars = String.UnicodeScalarView()
        for scalar in lastComponent.unicodeScalars {
            switch scalar.value {
            case 0..<0x20, 0x7F, 0x80..<0xA0:
                // Control characters (C0, DEL, C1) would corrupt terminals and logs: replace them.
                scalars.append("_")
            case 0x202A...0x202E, 0x2066...0x2069:
                // Bidirectional overrides can disguise an extension (`exe.txt` shown as `txt.exe`).
                scalars.append("_")
            default:
                scalars.append(scalar)
            }
        }
        // Leading dots would hide the file (and `.xfer-partial` is ours): keep the rest of the name. Dots and
        // spaces are stripped together, so that `. ..` cannot leave `..` (nor `. .x` a hidden `.x`).
        var result = String(scalars.drop(while: { $0 == "." || $0 == " " })).trimmingSpaces()
        guard !result.isEmpty else {
            throw XferError(
                .badName,
                "file name \"\(name.prefix(60))\" has nothing usable after removing directories and dots: pass --name"
            )
        }
        if result.utf8.count > Self.maxBytes {
            // The cut may end in spaces, or keep only the extension of a name whose first character is too long:
            // strip again, so that the result is visible and sanitising it again gives it back.
            result = String(Self.truncate(result, toBytes: Self.maxBytes).trimmingSpaces().drop(while: { $0 == "." }))
                .trimmingSpaces()
            guard !result.isEmpty else {
                throw XferError(
                    .badName,
                    "file name \"\(name.prefix(60))\" is too long to keep anything of: pass --name"
                )
            }
        }
        return result
    }

    /// The n-th variant of `name` for when it exists already: `report.tar.gz` becomes `report (1).tar.gz`.
    public static func numbered(_ name: String, _ number: Int) -> String {
        guard number > 0 else { return name }
        let (stem, suffix) = Self.splitExtension(name)
        return "\(stem) (\(number))\(suffix)"
    }

    static func splitExtension(_ name: String) -> (String, String) {
        // Treat common double extensions as one, so that `x.tar.gz` stays a `.tar.gz`.
        for double in [".tar.gz", ".tar.bz2", ".tar.xz", ".tar.zst"]
        where name.hasSuffix(double) && name.count > double.count {
            return (String(name.dropLast(double.count)), double)
        }
        if let dot = name.lastIndex(of: "."), dot != name.startIndex {
            return (String(name[..<dot]), String(name[dot...]))
        }
        return (name, "")
    }

    /// Cuts `name` to at most `limit` UTF-8 bytes on a character boundary, keeping a short extension.
    static func truncate(_ name: String, toBytes limit: Int) -> String {
        let (stem, suffix) = Self.splitExtension(name)
        let keptSuffix = suffix.utf8.count <= 16 ? suffix : ""
        var kept = ""
        var used = keptSuffix.utf8.count
        for character in stem {
            let size = character.utf8.count
            if used + size > limit { break }
            kept.append(character)
            used += size
        }
        return kept + keptSuffix
    }
}

extension String {
    fileprivate func trimmingSpaces() -> String {
        var scalars = Substring(self)
        while scalars.first == " " { scalars.removeFirst() }
        while scalars.last == " " { scalars.removeLast() }
        return String(scalars)
    }
}
