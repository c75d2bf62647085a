import NIOCore
import Testing

@testable import XferClientSide
@testable import XferServerSide
@testable import XferTransport

/// The block buffer pool: empty buffers of the right size, reuse, and its bounds.
struct BufferPoolTests {
    @Test func aTakenBufferIsEmptyAndLargeEnough() {
        let pool = BufferPool(capacity: 4096, limit: 2)
        let buffer = pool.take()
        #expect(buffer.readableBytes == 0)
        #expect(buffer.capacity >= 4096)
    }

    @Test func aReturnedBufferComesBackEmpty() {
        let pool = BufferPool(capacity: 4096, limit: 2)
        var buffer = pool.take()
        buffer.writeBytes([1, 2, 3])
        buffer.moveReaderIndex(forwardBy: 1)
        pool.give(buffer)
        #expect(pool.count == 1)
        let again = pool.take()
        #expect(pool.count == 0)
        #expect(again.readerIndex == 0 && again.writerIndex == 0)
    }

    @Test func smallBuffersAndBuffersPastTheLimitAreNotKept() {
        let pool = BufferPool(capacity: 4096, limit: 2)
        pool.give(ByteBufferAllocator().buffer(capacity: 100))
        #expect(pool.count == 0)
        for _ in 0..<3 { pool.give(ByteBufferAllocator().buffer(capacity: 4096)) }
        #expect(pool.count == 2)
    }

    /// A buffer given back while someone still holds it is safe: writing to the reused one copies, the holder's
    /// bytes stay as they were.
    @Test func aBufferStillHeldElsewhereIsNotChangedUnderItsHolder() {
        let pool = BufferPool(capacity: 4096, limit: 2)
        var buffer = pool.take()
        buffer.writeBytes([7, 7, 7])
        let holder = buffer
        pool.give(buffer)
        var reused = pool.take()
        reused.writeBytes([9, 9, 9, 9])
        #expect(Array(holder.readableBytesView) == [7, 7, 7])
        #expect(Array(reused.readableBytesView) == [9, 9, 9, 9])
    }

    /// A buffer moved back while nothing else holds it keeps its storage; one given back while still held is
    /// counted, and comes back with fresh storage.
    @Test func onlyABufferNothingElseHoldsKeepsItsStorage() {
        let pool = BufferPool(capacity: 4096, limit: 2)
        var buffer = pool.take()
        buffer.writeBytes([1, 2, 3])
        let storage = buffer.withVeryUnsafeBytes { UInt(bitPattern: $0.baseAddress) }
        pool.give(consume buffer)
        #expect(pool.sharedOnReturn == 0)
        var again = pool.take()
        #expect(again.withVeryUnsafeBytes { UInt(bitPattern: $0.baseAddress) } == storage)
        again.writeBytes([4, 5])
        let holder = again.getSlice(at: 0, length: 1)
        pool.give(consume again)
        #expect(pool.sharedOnReturn == 1)
        let fresh = pool.take()
        #expect(fresh.withVeryUnsafeBytes { UInt(bitPattern: $0.baseAddress) } != storage)
        #expect(holder.map { Array($0.readableBytesView) } == [4])
    }
}
