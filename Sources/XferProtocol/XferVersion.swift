/// The version of this build, printed by `--version` and sent in `welcome`.
public enum XferVersion {
    /// Semantic version of the xfer tool.
    public static let current = "0.1.0"
}
