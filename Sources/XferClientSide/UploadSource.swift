import Crypto
import Foundation
import XferProtocol

#if canImport(Glibc)
import Glibc
#endif

/// Where an upload's bytes come from: a regular file (readable at any offset) or a stream (stdin, read once).
public final class UploadSource: @unchecked Sendable {
    /// How the source is read.
    public enum Kind: Sendable {
        /// A file of `size` bytes, read with pread(2).
        case file(size: UInt64)
        /// A pipe or terminal, read sequentially until EOF.
        case stream
    }

    /// What the user named (a path, or `-`).
    public let displayName: String
    /// How the source is read.
    public let kind: Kind
    /// The file's modification time in nanoseconds (0 for a stream).
    public let mtimeNanos: Int64
    /// The file's absolute, symlink-resolved path (nil for a stream).
    public let realPath: String?
    private let fd: Int32

    /// Opens `path` for reading; `-` means stdin. Throws `input_unreadable` (exit 66) with the reason.
    public init(path: String) throws(XferError) {
        self.displayName = path
        if path == "-" {
            self.fd = 0
            self.kind = .stream
            self.mtimeNanos = 0
            self.realPath = nil
            return
        }
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw XferError(.inputUnreadable, "cannot read \(path): \(String(cString: strerror(errno)))")
        }
        var info = stat()
        fstat(fd, &info)
        if (info.st_mode & S_IFMT) == S_IFDIR {
            Glibc.close(fd)
            throw XferError(.inputUnreadable, "\(path) is a directory: upload the files in it, or an archive of it")
        }
        self.fd = fd
        if (info.st_mode & S_IFMT) == S_IFREG {
            self.kind = .file(size: UInt64(info.st_size))
        } else {
            // A FIFO or a character device (`xfer upload <(cmd)`): a stream that cannot be re-read.
            self.kind = .stream
        }
        self.mtimeNanos = Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
        self.realPath = realpath(path, nil).map { pointer in
            defer { free(pointer) }
            return String(cString: pointer)
        }
    }

    deinit {
        if self.fd > 0 { Glibc.close(self.fd) }
    }

    /// Whether the source can be re-read at any offset.
    public var isSeekable: Bool {
        if case .file = self.kind { return true }
        return false
    }

    /// The total size, when known in advance.
    public var size: UInt64? {
        if case .file(let size) = self.kind { return size }
        return nil
    }

    /// Reads up to `count` bytes at `offset` (files) or the next `count` bytes (streams) into `buffer`; fewer only
    /// at the end. Blocking.
    public func read(at offset: UInt64, count: Int, into buffer: UnsafeMutableRawBufferPointer) throws(XferError) -> Int
    {
        var filled = 0
        while filled < count {
            let result: Int
            if self.isSeekable {
                result = pread(self.fd, buffer.baseAddress! + filled, count - filled, off_t(offset) + off_t(filled))
            } else {
                result = Glibc.read(self.fd, buffer.baseAddress! + filled, count - filled)
            }
            if result < 0 {
                if errno == EINTR { continue }
                throw XferError(
                    .inputUnreadable,
                    "cannot read \(self.displayName): \(String(cString: strerror(errno)))"
                )
            }
            if result == 0 { break }
            filled += result
        }
        return filled
    }

    /// The stable upload id of this file saved as `name`: the same file, unchanged, resumes under the same id.
    /// A stream gets a random id (it cannot be re-read by a later run).
    public func uploadID(savedAs name: String) -> String {
        guard let realPath = self.realPath, let size = self.size else {
            return Hex.encode((0..<16).map { _ in UInt8.random(in: 0...255) })
        }
        let key = "xfer-upload-v1\n\(realPath)\n\(size)\n\(self.mtimeNanos)\n\(name)"
        return String(Hex.encode(SHA256.hash(data: Array(key.utf8))).prefix(32))
    }
}
