/* matmul_avx512.c: AVX-512 weight products, F32 and BF16 weights: the small-m kernel (decode)
 * and the register-tiled one (prefill, grouped expert products), both summing every output in
 * one order, so a row's result does not depend on how many rows share the call (a token's
 * output is the same whichever other tokens its expert sees).
 *
 * The order: lane l of one 16-float accumulator takes the products of columns c + l (F32) or
 * of the pair c + 2l, c + 2l + 1 (BF16: a 64-byte load holds 16 such pairs; the input row is
 * de-interleaved to match) for c = 0, 16 (32), ... up to the last full vector; then a fixed
 * horizontal sum; then the remaining columns one by one. The tiles block k to keep a group of
 * weight rows in L1 while every input row passes, and carry the 16-lane accumulators across
 * blocks in memory, which leaves the order unchanged. */
#include "matmul.h"

#include <immintrin.h>
#include <math.h>

static inline float hsum16(__m512 v) {
    __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
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

#define ROW_AHEAD 2048 /* bytes: decode's software prefetch into each weight row (matmul_avx2.c) */

/* M input rows against R weight rows (r, r + rs, ...), columns [c0, c1) of the vector part
 * (c1 <= kv, both multiples of the step). acc: M*R saved accumulators when the k range is
 * split (NULL: one pass); the first block starts from zero, the last one finishes: horizontal
 * sum, scalar tail from the original rows x (stride ldx), result into y. xv: the rows the
 * vector part reads (x itself for F32, de-interleaved copies for BF16), stride ldv. */
static inline __attribute__((always_inline)) void
block(const float *xv, size_t ldv, const float *x, int ldx, const void *w, int k, int r, int rs,
      int c0, int c1, int kv, __m512 *acc_io, float *y, int ldy,
      const int BF, const int M, const int R, const bool PF) {
    __m512 acc[4][6];
    if (c0 == 0 || !acc_io) {
        for (int i = 0; i < M; i++)
            for (int j = 0; j < R; j++) acc[i][j] = _mm512_setzero_ps();
    } else {
        for (int i = 0; i < M; i++)
            for (int j = 0; j < R; j++) acc[i][j] = _mm512_load_ps((const float *)&acc_io[i * R + j]);
    }
    if (BF) {
        const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
        for (int c = c0; c < c1; c += 32) {
            __m512i p[6];
            for (int j = 0; j < R; j++) {
                const uint16_t *wr = (const uint16_t *)w + (size_t)(r + j * rs) * k + c;
                if (PF) _mm_prefetch((const char *)(wr + ROW_AHEAD / 2), _MM_HINT_T0);
                p[j] = _mm512_loadu_si512(wr);
            }
            for (int i = 0; i < M; i++) {
                __m512 xe = _mm512_loadu_ps(xv + i * ldv + c);
                __m512 xo = _mm512_loadu_ps(xv + i * ldv + c + 16);
                for (int j = 0; j < R; j++) {
                    acc[i][j] = _mm512_fmadd_ps(
                        xe, _mm512_castsi512_ps(_mm512_slli_epi32(p[j], 16)), acc[i][j]);
                    acc[i][j] = _mm512_fmadd_ps(
                        xo, _mm512_castsi512_ps(_mm512_and_si512(p[j], hi)), acc[i][j]);
                }
            }
        }
    } else {
        for (int c = c0; c < c1; c += 16) {
            __m512 wv[6];
            for (int j = 0; j < R; j++) {
                const float *wr = (const float *)w + (size_t)(r + j * rs) * k + c;
                if (PF) _mm_prefetch((const char *)(wr + ROW_AHEAD / 4), _MM_HINT_T0);
                wv[j] = _mm512_loadu_ps(wr);
            }
            for (int i = 0; i < M; i++) {
                __m512 xi = _mm512_loadu_ps(xv + i * ldv + c);
                for (int j = 0; j < R; j++) acc[i][j] = _mm512_fmadd_ps(xi, wv[j], acc[i][j]);
            }
        }
    }
    if (acc_io && c1 < kv) {
        for (int i = 0; i < M; i++)
            for (int j = 0; j < R; j++) _mm512_store_ps((float *)&acc_io[i * R + j], acc[i][j]);
        return;
    }
    for (int i = 0; i < M; i++)
        for (int j = 0; j < R; j++) {
            float s = hsum16(acc[i][j]);
            const float *xi = x + (size_t)i * ldx;
            size_t base = (size_t)(r + j * rs) * k;
            for (int c = kv; c < k; c++) s = fmaf(xi[c], w_scalar(w, base + c, BF), s);
            y[(size_t)i * ldy + r + j * rs] = s;
        }
}

/* BF16: rows of x re-laid so that each 32 columns hold their 16 even then their 16 odd ones */
static void deinterleave(const float *x, int m, int ldx, int k, float *xd) {
    int kv = k & ~31;
    for (int i = 0; i < m; i++) {
        const float *xi = x + (size_t)i * ldx;
        float *di = xd + (size_t)i * k;
        for (int c = 0; c < kv; c += 32)
            for (int j = 0; j < 16; j++) {
                di[c + j] = xi[c + 2 * j];
                di[c + 16 + j] = xi[c + 2 * j + 1];
            }
    }
}

/* Decode: R weight rows taken from R separate stretches of the block (as matmul_avx2.c does:
 * adjacent short rows share pages and defeat the hardware prefetcher), prefetched ahead. */
#define SMALL(BF, M, R)                                                                            \
    do {                                                                                           \
        int q = nr / (R);                                                                          \
        for (int i = 0; i < q; i++)                                                                \
            block(xv, ldv, x, ldx, wd, k, r0 + i, q, 0, kv, kv, NULL, y, ldy, BF, M, R, true);      \
        for (int r = r0 + (R)*q; r < r0 + nr; r++)                                                 \
            block(xv, ldv, x, ldx, wd, k, r, 1, 0, kv, kv, NULL, y, ldy, BF, M, 1, true);           \
    } while (0)
#define SMALL_M(BF)                                                                                \
    switch (m) {                                                                                   \
    case 1:                                                                                        \
        SMALL(BF, 1, 4);                                                                           \
        break;                                                                                     \
    case 2:                                                                                        \
        SMALL(BF, 2, 4);                                                                           \
        break;                                                                                     \
    case 3:                                                                                        \
        SMALL(BF, 3, 4);                                                                           \
        break;                                                                                     \
    default:                                                                                       \
        SMALL(BF, 4, 4);                                                                           \
        break;                                                                                     \
    }

void mm_small_avx512(const float *x, int m, int ldx, const mm_weight *w, int r0, int nr, float *y,
                     int ldy, float *scratch) {
    int k = w->k;
    const void *wd = w->data;
    if (w->dt == SPINE_DT_BF16) {
        int kv = k & ~31;
        deinterleave(x, m, ldx, k, scratch);
        const float *xv = scratch;
        size_t ldv = (size_t)k;
        SMALL_M(1)
    } else {
        int kv = k & ~15;
        const float *xv = x;
        size_t ldv = (size_t)ldx;
        SMALL_M(0)
    }
}

/* Prefill tiles: 4 input rows x R weight rows (F32: 24 accumulators, 10 loads per 24 FMAs;
 * BF16: 4 x 4, two FMAs per loaded pair), k in blocks of KC columns so that the R weight rows
 * stay in L1 while every input row of the chunk passes. */
#define KC 512
#define R_F32 6
#define R_BF16 4

#define TILE_ROWS(BF, R)                                                                           \
    do {                                                                                           \
        for (int c0 = 0;; c0 += KC) {                                                              \
            int c1 = SPINE_MIN(kv, c0 + KC);                                                       \
            int i = 0; \
            for (; i + 4 <= mb; i += 4)                                                 \
                block(xv + (size_t)i * ldv, ldv, xs + (size_t)i * ldx, ldx, wd, k, r, 1, c0, c1,    \
                      kv, split ? acc + (size_t)i * (R) : NULL, ys + (size_t)i * ldy, ldy, BF, \
                      4, R, false);                                                                \
            for (; i < mb; i++)                                                         \
                block(xv + (size_t)i * ldv, ldv, xs + (size_t)i * ldx, ldx, wd, k, r, 1, c0, c1,    \
                      kv, split ? acc + (size_t)i * (R) : NULL, ys + (size_t)i * ldy, ldy, BF, \
                      1, R, false);                                                                \
            if (c1 >= kv) break;                                                                   \
        }                                                                                          \
    } while (0)

#define TILE(BF, R)                                                                                \
    do {                                                                                           \
        int r = r0, end = r0 + nr;                                                                 \
        for (; r + (R) <= end; r += (R)) TILE_ROWS(BF, R);                                         \
        for (; r < end; r++) TILE_ROWS(BF, 1);                                                     \
    } while (0)

void mm_tile_avx512(const float *x, int m, int ldx, const mm_weight *w, int r0, int nr, float *y,
                    int ldy, float *scratch) {
    int k = w->k;
    const void *wd = w->data;
    bool bf16 = w->dt == SPINE_DT_BF16;
    int kv = k & ~(bf16 ? 31 : 15);
    bool split = kv > KC;
    /* scratch: the saved accumulators (64-byte aligned: scratch is), then BF16 input rows */
    __m512 *acc = (__m512 *)scratch;
    float *xd = scratch + MM_TILE_ACC_FLOATS;
    for (int i0 = 0; i0 < m; i0 += MM_TILE_ROWS) {
        int mb = SPINE_MIN(MM_TILE_ROWS, m - i0);
        const float *xs = x + (size_t)i0 * ldx;
        float *ys = y + (size_t)i0 * ldy;
        if (bf16) {
            deinterleave(xs, mb, ldx, k, xd);
            const float *xv = xd;
            size_t ldv = (size_t)k;
            TILE(1, R_BF16);
        } else {
            const float *xv = xs;
            size_t ldv = (size_t)ldx;
            TILE(0, R_F32);
        }
    }
}
