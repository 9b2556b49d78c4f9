/* fmapeak_avx2.c: the AVX2/FMA chains of the peak probe: 12 independent accumulators, enough to
 * hide a 4-5 cycle FMA latency on two FMA ports. */
#include <immintrin.h>
#include <stdint.h>

double fmapeak_chains_avx2(uint64_t iters) {
    __m256 a[12];
    __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps((float)i);
    for (uint64_t it = 0; it < iters; it++) {
        a[0] = _mm256_fmadd_ps(a[0], b, c);
        a[1] = _mm256_fmadd_ps(a[1], b, c);
        a[2] = _mm256_fmadd_ps(a[2], b, c);
        a[3] = _mm256_fmadd_ps(a[3], b, c);
        a[4] = _mm256_fmadd_ps(a[4], b, c);
        a[5] = _mm256_fmadd_ps(a[5], b, c);
        a[6] = _mm256_fmadd_ps(a[6], b, c);
        a[7] = _mm256_fmadd_ps(a[7], b, c);
        a[8] = _mm256_fmadd_ps(a[8], b, c);
        a[9] = _mm256_fmadd_ps(a[9], b, c);
        a[10] = _mm256_fmadd_ps(a[10], b, c);
        a[11] = _mm256_fmadd_ps(a[11], b, c);
    }
    __m256 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, a[i]);
    float out[8];
    _mm256_storeu_ps(out, s);
    double r = 0;
    for (int i = 0; i < 8; i++) r += out[i];
    return r;
}
