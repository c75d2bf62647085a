// CRC-32 (zlib's polynomial, ISO 3309 / ITU-T V.42) with carry-less multiplication where the CPU has it.
#ifndef XFER_CRC32_H
#define XFER_CRC32_H
#include <stddef.h>
#include <stdint.h>

/// The same value as zlib's `crc32(crc, bytes, count)`: start with crc 0, or continue from an earlier result.
uint32_t xfer_crc32(uint32_t crc, const void *bytes, size_t count);

/// zlib's own table-driven crc32 (the reference the fast path is tested against).
uint32_t xfer_crc32_reference(uint32_t crc, const void *bytes, size_t count);

/// 1 when `xfer_crc32` uses PCLMULQDQ on this CPU, 0 when it falls back to zlib.
int xfer_crc32_accelerated(void);
#endif
