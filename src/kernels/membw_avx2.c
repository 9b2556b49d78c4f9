/* membw_avx2.c: the sequential-read loop of the memory probe with AVX2: the slice is read in
 * 8 MiB blocks (the size of a weight matrix), each as 4 streams a quarter block apart, 32-byte
 * loads into 8 independent accumulators — the way weight-streaming kernels read. One scalar
 * stream per thread measured 10-20% below what those kernels reach on this kind of machine.
 * Optionally with a software prefetch a fixed distance ahead in each stream, as the decode
 * kernels do (it raised an Intel Xeon's reads by 5-10%). */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#define BLOCK ((size_t)8 << 20)

/* Reads the first `bytes` of base (a multiple of 256); returns a value to keep the loads.
 * ahead: 0, or how far ahead in each stream to prefetch (the weight kernels' own distance). */
uint64_t membw_seq_avx2(const uint8_t *base, size_t bytes, size_t ahead) {
    __m256i a[8];
    for (int i = 0; i < 8; i++) a[i] = _mm256_setzero_si256();
    for (size_t o = 0; o < bytes; o += BLOCK) {
        size_t blk = bytes - o < BLOCK ? bytes - o : BLOCK, q = blk / 4 / 64 * 64;
        const uint8_t *p = base + o;
        for (size_t k = 0; k < q; k += 64)
            for (int s = 0; s < 4; s++) {
                const uint8_t *r = p + (size_t)s * q + k;
                if (ahead) _mm_prefetch((const char *)(r + ahead), _MM_HINT_T0);
                a[2 * s] = _mm256_xor_si256(a[2 * s], _mm256_load_si256((const __m256i *)r));
                a[2 * s + 1] =
                    _mm256_xor_si256(a[2 * s + 1], _mm256_load_si256((const __m256i *)(r + 32)));
            }
    }
    __m256i x = a[0];
    for (int i = 1; i < 8; i++) x = _mm256_xor_si256(x, a[i]);
    return (uint64_t)_mm256_extract_epi64(x, 0) ^ (uint64_t)_mm256_extract_epi64(x, 3);
}
