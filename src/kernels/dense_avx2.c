/* dense_avx2.c: AVX2/FMA pairwise dot products for the DLRM interaction. */
#include "kernels.h"

#include <immintrin.h>

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

void dense_dot_avx2(const float *feat, int nf, int d, bool self, float *out) {
    size_t o = 0;
    int dv = d & ~7;
    for (int i = 0; i < nf; i++) {
        const float *a = feat + (size_t)i * d;
        int jn = self ? i + 1 : i;
        for (int j = 0; j < jn; j++) {
            const float *b = feat + (size_t)j * d;
            __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
            int k = 0;
            for (; k + 16 <= dv; k += 16) {
                acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), acc0);
                acc1 =
                    _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 8), _mm256_loadu_ps(b + k + 8), acc1);
            }
            for (; k < dv; k += 8)
                acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), acc0);
            float s = hsum(_mm256_add_ps(acc0, acc1));
            for (; k < d; k++) s = __builtin_fmaf(a[k], b[k], s);
            out[o++] = s;
        }
    }
}
