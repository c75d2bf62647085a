// libdeflate (Debian's libdeflate-dev): whole-buffer DEFLATE in the zlib format (RFC 1950), about twice as fast
// as zlib's level 1 with a smaller output. It has no preset dictionary: each block is a stream of its own.
#ifndef CXFERDEFLATE_SHIM_H
#define CXFERDEFLATE_SHIM_H
#include <libdeflate.h>
#endif
