import NIOCore
import Synchronization

/// Block-sized buffers kept for reuse, so that an upload recycles the same memory instead of taking fresh pages
/// for every block.
///
/// Fresh memory is expensive here: glibc gives large freed buffers back to the kernel, and every new page then
/// costs a page fault (on this VM kind also a fault in the host). With a new 1 MiB buffer or two per block, a
/// 1 GiB upload took 40-70 thousand faults in each process.
///
/// Returning a buffer that is still referenced elsewhere is safe: ByteBuffer copies on write, so nothing is shared
/// by mistake. But the saving is lost: the buffer's storage cannot be reused, and `give` replaces it with fresh
/// memory (counted in `sharedOnReturn`). So give a buffer back only when nothing else holds it, and move it in
/// (`pool.give(consume buffer)`, or a temporary such as `array.removeLast()`): a binding that is merely no longer
/// used still holds its reference until the end of its scope.
package final class BufferPool: Sendable {
    /// Capacity of the buffers handed out.
    package let capacity: Int
    /// Most buffers kept; more are freed.
    package let limit: Int
    private let free = Mutex<[ByteBuffer]>([])
    private let shared = Atomic<Int>(0)

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

    /// Gives `buffer` back for reuse, emptied (ignored when it is too small or the pool is full).
    ///
    /// A buffer whose storage something else still references cannot be reused in place: it comes back with fresh
    /// storage of the same size instead, and `sharedOnReturn` counts it.
    package func give(_ buffer: consuming ByteBuffer) {
        guard buffer.capacity >= self.capacity else { return }
        let storage = buffer.storageAddress
        // `clear()` keeps the storage when this is its only reference, and allocates new storage otherwise.
        buffer.clear()
        if buffer.storageAddress != storage {
            self.shared.wrappingAdd(1, ordering: .relaxed)
        }
        // Moved, not copied, into the list: a reference left here would make the next `take` look shared.
        var moving: ByteBuffer? = consume buffer
        self.free.withLock { free in
            if free.count < self.limit, let buffer = moving.take() { free.append(buffer) }
        }
    }

    /// Buffers that came back while something else still referenced their storage (see `give`).
    package var sharedOnReturn: Int { self.shared.load(ordering: .relaxed) }

    /// Buffers waiting for reuse.
    package var count: Int { self.free.withLock { $0.count } }
}

extension ByteBuffer {
    /// Where the storage starts: two buffers with the same address share their storage.
    fileprivate var storageAddress: UInt {
        self.withVeryUnsafeBytes { UInt(bitPattern: $0.baseAddress) }
    }
}
