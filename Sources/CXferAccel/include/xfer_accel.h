// The two byte loops of an upload that run over every byte on both sides, in C for the CPU's vector instructions:
// CRC-32 (zlib's polynomial, ISO 3309 / ITU-T V.42) with carry-less multiplication, and WebSocket masking.
#ifndef XFER_ACCEL_H
#define XFER_ACCEL_H
#include <stddef.h>
#include <stdint.h>

/// The same value as zlib's `crc32(crc, bytes, count)`: start with crc 0, or continue from an earlier result.
uint32_t xfer_crc32(uint32_t crc, const void *bytes, size_t count);

/// zlib's own table-driven crc32 (the reference the fast path is tested against).
uint32_t xfer_crc32_reference(uint32_t crc, const void *bytes, size_t count);

/// 1 when `xfer_crc32` uses PCLMULQDQ on this CPU, 0 when it falls back to zlib.
int xfer_crc32_accelerated(void);

/// RFC 6455 section 5.3 masking: `destination[i] = source[i] ^ key[i % 4]`, where `key` holds the four key bytes
/// in memory order (byte 0 first, as a little-endian load gives them). `destination` may equal `source` (in
/// place); otherwise the two must not overlap.
void xfer_mask(void *destination, const void *source, size_t count, uint32_t key);
#endif
