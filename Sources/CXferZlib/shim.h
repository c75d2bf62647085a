// Thin wrappers over the system zlib (Debian's zlib1g-dev): the init macros are not visible from Swift.
#ifndef CXFERZLIB_SHIM_H
#define CXFERZLIB_SHIM_H
#include <zlib.h>

static inline int cxfer_deflate_init(z_streamp stream, int level) {
    // zlib format (windowBits 15), memLevel 8, default strategy: what `gzip -N` uses, with a zlib header.
    return deflateInit2(stream, level, Z_DEFLATED, 15, 8, Z_DEFAULT_STRATEGY);
}

static inline int cxfer_inflate_init(z_streamp stream) {
    return inflateInit2(stream, 15);
}
#endif
