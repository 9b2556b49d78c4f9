/* fmapeak_avx512.c: the AVX-512 chains of the peak probe: 16 lanes a fused multiply-add, 12
 * independent accumulators (two 512-bit FMA ports, 4-cycle latency), so that on a CPU with
 * AVX-512 the peak quoted is the widest vectors', not half of it. */
#include <immintrin.h>
#include <stdint.h>

double fmapeak_chains_avx512(uint64_t iters) {
    __m512 a[12];
    const __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i);
    for (uint64_t it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], b, c);
    }
    __m512 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, a[i]);
    return (double)_mm512_reduce_add_ps(s);
}
