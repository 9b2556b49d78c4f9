/* matmul_avx2.c: AVX2/FMA kernels for weight products in F32 and BF16, small-m (decode) and
 * register-tiled (prefill), both summing each output in one order; the fused SwiGLU epilogue
 * with a vectorised exp; the dot and axpy of attention. */
#include "matmul.h"

#include <immintrin.h>
#include <math.h>

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float bf16_at(const void *w, size_t i) {
    uint32_t u = (uint32_t)((const uint16_t *)w)[i] << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Decode streams each weight row once; a software prefetch this far ahead in each row keeps
 * more of it in flight than the hardware prefetcher does alone (an Intel Xeon: F32 28 -> 31,
 * BF16 24 -> 27.5 GB/s in `spine bench matmul --threads 2`; no change measured on AMD EPYC). */
#define ROW_AHEAD 2048 /* bytes */

/* F32: R weight rows at once against M input rows: M*R independent accumulators; PF: prefetch
 * ROW_AHEAD into each row (decode; the prefill tiles reuse rows from L1 instead). */
static inline __attribute__((always_inline)) void block(const float *x, int ldx, const float *w,
                                                        int k, int r, int rs, float *y, int ldy,
                                                        const int M, const int R, const bool PF) {
    __m256 acc[4][4];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < R; j++) acc[i][j] = _mm256_setzero_ps();
    int kv = k & ~7;
    for (int c = 0; c < kv; c += 8) {
        __m256 wv[4];
        if (PF && (c & 15) == 0) /* once per 64-byte line */
            for (int j = 0; j < R; j++)
                _mm_prefetch((const char *)(w + (size_t)(r + j * rs) * k + c + ROW_AHEAD / 4),
                             _MM_HINT_T0);
        for (int j = 0; j < R; j++) wv[j] = _mm256_loadu_ps(w + (size_t)(r + j * rs) * k + c);
        for (int i = 0; i < M; i++) {
            __m256 xv = _mm256_loadu_ps(x + (size_t)i * ldx + c);
            for (int j = 0; j < R; j++) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < M; i++)
        for (int j = 0; j < R; j++) {
            float s = hsum(acc[i][j]);
            const float *xi = x + (size_t)i * ldx;
            for (int c = kv; c < k; c++) s = fmaf(xi[c], w[(size_t)(r + j * rs) * k + c], s);
            y[(size_t)i * ldy + r + j * rs] = s;
        }
}

/* R rows at once, taken from R separate stretches of the block (rows i, i + q, i + 2q, ...)
 * rather than adjacent ones: short adjacent rows share 4 KiB pages, and two streams in one
 * page defeat the hardware prefetcher (spine bench matmul --dtype bf16: 13-14 GB/s with
 * adjacent rows, 24-26 spread, one thread). */
#define SPREAD(BLOCK, M, R)                                                                        \
    do {                                                                                           \
        int q = nr / (R);                                                                          \
        for (int i = 0; i < q; i++) BLOCK(r0 + i, q, M, R);                                        \
        for (int r = r0 + (R)*q; r < r0 + nr; r++) BLOCK(r, 1, M, 1);                              \
    } while (0)
#define SPREAD_M(BLOCK)                                                                            \
    switch (m) {                                                                                   \
    case 1:                                                                                        \
        SPREAD(BLOCK, 1, 4);                                                                       \
        break;                                                                                     \
    case 2:                                                                                        \
        SPREAD(BLOCK, 2, 4);                                                                       \
        break;                                                                                     \
    case 3:                                                                                        \
        SPREAD(BLOCK, 3, 2);                                                                       \
        break;                                                                                     \
    default:                                                                                       \
        SPREAD(BLOCK, 4, 2);                                                                       \
        break;                                                                                     \
    }

static void small_f32(const float *x, int m, int ldx, const float *w, int k, int r0, int nr,
                      float *y, int ldy) {
#define F32_BLOCK(R0, RS, M, R) block(x, ldx, w, k, R0, RS, y, ldy, M, R, true)
    SPREAD_M(F32_BLOCK)
#undef F32_BLOCK
}

/* BF16 decode: a 32-byte load holds 16 weights as 8 pairs; (pair << 16) is the even weight and
 * (pair & 0xffff0000) the odd one, exactly, as f32: two ALU ops widen 16 weights (against a
 * widening load + shift per 8). The input rows come de-interleaved to match (xd: per 16
 * columns, the 8 even then the 8 odd). */
static inline __attribute__((always_inline)) void block16(const float *xd, const void *w,
                                                          const float *x, int ldx, int k, int r,
                                                          int rs, float *y, int ldy, const int M,
                                                          const int R, const bool PF) {
    __m256 acc[4][4];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < R; j++) acc[i][j] = _mm256_setzero_ps();
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
    int kv = k & ~15;
    for (int c = 0; c < kv; c += 16) {
        __m256 we[4], wo[4];
        for (int j = 0; j < R; j++) {
            const uint16_t *wr = (const uint16_t *)w + (size_t)(r + j * rs) * k + c;
            if (PF && (c & 31) == 0) _mm_prefetch((const char *)(wr + ROW_AHEAD / 2), _MM_HINT_T0);
            __m256i p = _mm256_loadu_si256((const __m256i *)wr);
            we[j] = _mm256_castsi256_ps(_mm256_slli_epi32(p, 16));
            wo[j] = _mm256_castsi256_ps(_mm256_and_si256(p, hi));
        }
        for (int i = 0; i < M; i++) {
            __m256 xe = _mm256_loadu_ps(xd + (size_t)i * k + c);
            __m256 xo = _mm256_loadu_ps(xd + (size_t)i * k + c + 8);
            for (int j = 0; j < R; j++) {
                acc[i][j] = _mm256_fmadd_ps(xe, we[j], acc[i][j]);
                acc[i][j] = _mm256_fmadd_ps(xo, wo[j], acc[i][j]);
            }
        }
    }
    for (int i = 0; i < M; i++)
        for (int j = 0; j < R; j++) {
            float s = hsum(acc[i][j]);
            const float *xi = x + (size_t)i * ldx;
            for (int c = kv; c < k; c++)
                s = fmaf(xi[c], bf16_at(w, (size_t)(r + j * rs) * k + c), s);
            y[(size_t)i * ldy + r + j * rs] = s;
        }
}

/* the m input rows (stride ldx) de-interleaved into xd (stride k) */
static void deinterleave(const float *x, int m, int ldx, int k, float *xd) {
    int kv = k & ~15;
    for (int i = 0; i < m; i++) {
        const float *xi = x + (size_t)i * ldx;
        float *di = xd + (size_t)i * k;
        for (int c = 0; c < kv; c += 16)
            for (int j = 0; j < 8; j++) {
                di[c + j] = xi[c + 2 * j];
                di[c + 8 + j] = xi[c + 2 * j + 1];
            }
    }
}

static void small_bf16(const float *x, int m, int ldx, const void *w, int k, int r0, int nr,
                       float *y, int ldy, float *xd) {
    deinterleave(x, m, ldx, k, xd);
#define BF16_BLOCK(R0, RS, M, R) block16(xd, w, x, ldx, k, R0, RS, y, ldy, M, R, true)
    SPREAD_M(BF16_BLOCK)
#undef BF16_BLOCK
}

/* Any m: register tiles of 4 input rows x 3 weight rows (F32: 12 accumulators, FMA bound
 * rather than load bound; BF16 in the decode kernel's even/odd order on input rows
 * de-interleaved a chunk at a time, so that a row's result does not depend on m), with each
 * group of weight rows kept in L1 while all input rows pass. BF16 4 x 3 spills some of its
 * widened weights and still beats 4 x 2 by 11-20% (`spine bench matmul --dtype bf16 --rows
 * --m 32|128` with SPINE_ISA=avx2 on an Intel Xeon; 4 x 4 another 2-5%, not taken: more
 * spills on a CPU not measured). */
/* (Blocking k to keep inputs in L1 was tried and lost: the extra horizontal sums cost more
 * than the misses saved.) */
#define TILE_ROWS(BLOCK, R)                                                                        \
    do {                                                                                           \
        int i = 0;                                                                                 \
        for (; i + 4 <= m; i += 4) BLOCK(i, 4, R);                                                 \
        for (; i < m; i++) BLOCK(i, 1, R);                                                         \
    } while (0)
#define TILE(BLOCK, R)                                                                             \
    do {                                                                                           \
        int r = r0, end = r0 + nr;                                                                 \
        for (; r + (R) <= end; r += (R)) TILE_ROWS(BLOCK, R);                                      \
        for (; r < end; r++) TILE_ROWS(BLOCK, 1);                                                  \
    } while (0)

static void tile_f32(const float *x, int m, int ldx, const float *w, int k, int r0, int nr,
                     float *y, int ldy) {
#define F32_TILE(I, M, R)                                                                          \
    block(x + (size_t)(I)*ldx, ldx, w, k, r, 1, y + (size_t)(I)*ldy, ldy, M, R, false)
    TILE(F32_TILE, 3);
#undef F32_TILE
}

static void tile_bf16(const float *x, int m0, int ldx, const void *w, int k, int r0, int nr,
                      float *y, int ldy, float *xd) {
    for (int i0 = 0; i0 < m0; i0 += MM_TILE_ROWS) {
        int m = SPINE_MIN(MM_TILE_ROWS, m0 - i0);
        const float *xs = x + (size_t)i0 * ldx;
        float *ys = y + (size_t)i0 * ldy;
        deinterleave(xs, m, ldx, k, xd);
#define BF16_TILE(I, M, R)                                                                         \
    block16(xd + (size_t)(I)*k, w, xs + (size_t)(I)*ldx, ldx, k, r, 1, ys + (size_t)(I)*ldy, ldy,  \
            M, R, false)
        TILE(BF16_TILE, 3);
#undef BF16_TILE
    }
}

void mm_tile_avx2(const float *x, int m, int ldx, const mm_weight *w, int r0, int nr, float *y,
                  int ldy, float *scratch) {
    if (w->dt == SPINE_DT_BF16)
        tile_bf16(x, m, ldx, w->data, w->k, r0, nr, y, ldy, scratch);
    else
        tile_f32(x, m, ldx, w->data, w->k, r0, nr, y, ldy);
}

void mm_small_avx2(const float *x, int m, int ldx, const mm_weight *w, int r0, int nr, float *y,
                   int ldy, float *scratch) {
    if (w->dt == SPINE_DT_BF16)
        small_bf16(x, m, ldx, w->data, w->k, r0, nr, y, ldy, scratch);
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

void mm_axpy_avx2(float *y, float a, const float *x, int n) {
    __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i,
                         _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] = fmaf(a, x[i], y[i]);
}
