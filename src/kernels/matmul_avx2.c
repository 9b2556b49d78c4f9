/* matmul_avx2.c: AVX2/FMA kernels for small-m weight products (decode) in F32 and BF16, and
 * the fused SwiGLU epilogue with a vectorised exp. */
#include "matmul.h"

#include <immintrin.h>
#include <math.h>

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256 load_w(const void *w, size_t i, int bf16) {
    if (bf16) {
        __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    return _mm256_loadu_ps((const float *)w + i);
}

static inline float w_scalar(const void *w, size_t i, int bf16) {
    if (bf16) {
        uint32_t u = (uint32_t)((const uint16_t *)w)[i] << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    return ((const float *)w)[i];
}

/* R weight rows at once against M input rows: M*R independent accumulators. */
static inline __attribute__((always_inline)) void block(const float *x, int ldx, const void *w,
                                                        int bf16, int k, int r, float *y, int ldy,
                                                        const int M, const int R) {
    __m256 acc[4][4];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < R; j++) acc[i][j] = _mm256_setzero_ps();
    int kv = k & ~7;
    for (int c = 0; c < kv; c += 8) {
        __m256 wv[4];
        for (int j = 0; j < R; j++) wv[j] = load_w(w, (size_t)(r + j) * k + c, bf16);
        for (int i = 0; i < M; i++) {
            __m256 xv = _mm256_loadu_ps(x + (size_t)i * ldx + c);
            for (int j = 0; j < R; j++) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < M; i++)
        for (int j = 0; j < R; j++) {
            float s = hsum(acc[i][j]);
            const float *xi = x + (size_t)i * ldx;
            for (int c = kv; c < k; c++)
                s = fmaf(xi[c], w_scalar(w, (size_t)(r + j) * k + c, bf16), s);
            y[(size_t)i * ldy + r + j] = s;
        }
}

#define DEFINE_SMALL(NAME, BF)                                                                     \
    static void NAME(const float *x, int m, int ldx, const void *w, int k, int r0, int nr,         \
                     float *y, int ldy) {                                                          \
        int r = r0, end = r0 + nr;                                                                 \
        switch (m) {                                                                               \
        case 1:                                                                                    \
            for (; r + 4 <= end; r += 4) block(x, ldx, w, BF, k, r, y, ldy, 1, 4);                 \
            for (; r < end; r++) block(x, ldx, w, BF, k, r, y, ldy, 1, 1);                         \
            break;                                                                                 \
        case 2:                                                                                    \
            for (; r + 4 <= end; r += 4) block(x, ldx, w, BF, k, r, y, ldy, 2, 4);                 \
            for (; r < end; r++) block(x, ldx, w, BF, k, r, y, ldy, 2, 1);                         \
            break;                                                                                 \
        case 3:                                                                                    \
            for (; r + 2 <= end; r += 2) block(x, ldx, w, BF, k, r, y, ldy, 3, 2);                 \
            for (; r < end; r++) block(x, ldx, w, BF, k, r, y, ldy, 3, 1);                         \
            break;                                                                                 \
        default:                                                                                   \
            for (; r + 2 <= end; r += 2) block(x, ldx, w, BF, k, r, y, ldy, 4, 2);                 \
            for (; r < end; r++) block(x, ldx, w, BF, k, r, y, ldy, 4, 1);                         \
            break;                                                                                 \
        }                                                                                          \
    }

DEFINE_SMALL(small_f32, 0)
DEFINE_SMALL(small_bf16, 1)

void mm_small_avx2(const float *x, int m, int ldx, const mm_weight *w, int r0, int nr, float *y,
                   int ldy) {
    if (w->dt == SPINE_DT_BF16)
        small_bf16(x, m, ldx, w->data, w->k, r0, nr, y, ldy);
    else
        small_f32(x, m, ldx, w->data, w->k, r0, nr, y, ldy);
}

/* exp(x) for x in [-88, 88] (clamped): 2^n * p(r), degree-6 polynomial, ~1 ulp in that range */
static inline __m256 exp256(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 r2 = _mm256_mul_ps(r, r);
    p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

void mm_swiglu_avx2(float *y, const float *y3, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(y + i);
        __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), v));
        __m256 s = _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
        _mm256_storeu_ps(y + i, _mm256_mul_ps(s, _mm256_loadu_ps(y3 + i)));
    }
    for (; i < n; i++) y[i] = mm_silu(y[i]) * y3[i];
}
