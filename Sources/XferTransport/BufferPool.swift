import NIOCore
import Synchronization

/// Block-sized buffers kept for reuse, so that an upload recycles the same memory instead of taking fresh pages
/// for every block.
///
/// Fresh memory is expensive here: glibc gives large freed buffers back to the kernel, and every new page then
/// costs a page fault (on this VM kind also a fault in the host). With a new 1 MiB buffer or two per block, a
/// 1 GiB upload took 40-70 thousand faults in each process.
///
/// Returning a buffer that is still referenced elsewhere is safe: ByteBuffer copies on write, so the next user
/// writes into new storage and nothing is shared by mistake; only the saving is lost.
package final class BufferPool: Sendable {
    /// Capacity of the buffers handed out.
    package let capacity: Int
    /// Most buffers kept; more are freed.
    package let limit: Int
    private let free = Mutex<[ByteBuffer]>([])

    package init(capacity: Int, limit: Int) {
        self.capacity = capacity
        self.limit = limit
    }

    /// An empty buffer of at least `capacity` bytes: a returned one when there is one.
    package func take() -> ByteBuffer {
        if var buffer = self.free.withLock({ $0.popLast() }) {
            buffer.clear()
            return buffer
        }
        return ByteBufferAllocator().buffer(capacity: self.capacity)
    }

    /// Gives `buffer` back for reuse (ignored when it is too small or the pool is full).
    package func give(_ buffer: ByteBuffer) {
        guard buffer.capacity >= self.capacity else { return }
        self.free.withLock { free in
            if free.count < self.limit { free.append(buffer) }
        }
    }

    /// Buffers waiting for reuse.
    package var count: Int { self.free.withLock { $0.count } }
}
