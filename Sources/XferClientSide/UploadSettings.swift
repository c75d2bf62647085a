import Crypto
import Dispatch
import Foundation
import NIOCore
import Synchronization
import XferEvents
import XferProtocol

/// Settings of one upload.
public struct UploadSettings: Sendable {
    /// Raw bytes per block. 1 MiB measured best here: large enough that per-frame costs vanish, small enough
    /// that a resume repeats little and memory stays low.
    public var blockSize: Int
    /// Compression level, 0 (never compress) to 9; the wire format is zlib's whatever the level.
    public var level: Int
    /// Blocks read, encoded or unacknowledged at once: this bounds memory and is the replay window of a stream.
    public var window: Int
    /// Threads compressing blocks in parallel (`--threads`); more than `window` would never get work.
    public var encoders: Int

    /// The `--threads` values accepted.
    public static let encoderRange = 1...64

    /// The default block size (1 MiB); the server's buffer pool is sized for it.
    public static let defaultBlockSize = UploadOffer.defaultBlockSize

    public init(
        blockSize: Int = UploadSettings.defaultBlockSize,
        level: Int = 1,
        window: Int = 8,
        encoders: Int = System.coreCount
    ) {
        self.blockSize = blockSize
        self.level = level
        self.window = window
        self.encoders = max(1, encoders)
    }
}
