/* matmul_avx512.c: AVX-512 weight products on weights laid out in panels (matmul.h: 16 rows
 * per group, column-major within it), F32 and BF16: the small-m kernel (decode) and the tiled
 * one (prefill, grouped expert products). A vector load takes one column of 16 rows; each
 * input element is broadcast against it: 16 outputs per FMA, one running sum per output, the
 * columns added in order, one FMA each. That is the scalar reference's order (mm_small_scalar),
 * so both kernels return bitwise what it returns, for every m.
 *
 * Decode streams each group once (one sequential stream per group, prefetched ahead).
 * Prefill: register tiles of 12 input rows x 32 outputs (two groups) over blocks of KC columns:
 * 24 accumulators, 2 panel loads and 12 broadcasts per 24 FMAs, the panels L1-resident while
 * all input rows pass (BF16 panels widened to F32 once per block in scratch); the running sums
 * wait in y between blocks. */
#include "matmul.h"

#include <immintrin.h>

#define AHEAD 2048 /* bytes: decode's software prefetch into each group's stream */
#define KC MM_PANEL_COLS
#define MR 12
#ifndef PF_AHEAD
#define PF_AHEAD (KC * 64) /* bytes ahead in each group's stream: the next block */
#endif

/* Software prefetch at an address computed as an integer: it may lie past the weights (a
 * prefetch never faults), which pointer arithmetic may not. */
static inline void fetch(uintptr_t a) {
    _mm_prefetch((const char *)a, _MM_HINT_T0);
}

static inline __mmask16 lanes(int rows) {
    return rows >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (rows > 0 ? rows : 0)) - 1);
}

/* column c of a group of h rows (the lanes past h are zero) */
static inline __m512 column(const char *g, int c, int h, __mmask16 mk, const int BF) {
    if (BF) {
        __m256i v = _mm256_maskz_loadu_epi16(mk, (const uint16_t *)g + (size_t)c * h);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
    }
    return _mm512_maskz_loadu_ps(mk, (const float *)g + (size_t)c * h);
}

/* Decode: M (1..8) input rows against the group of rows from g0 */
static inline __attribute__((always_inline)) void dec_group(const float *x, int ldx,
                                                            const mm_weight *w, int g0, float *y,
                                                            int ldy, const int BF, const int M) {
    int k = w->k, h = SPINE_MIN(16, w->n - g0);
    size_t es = BF ? 2 : 4;
    const char *g = (const char *)w->data + (size_t)g0 * k * es;
    __mmask16 mk = lanes(h);
    __m512 acc[8];
    for (int i = 0; i < M; i++) acc[i] = _mm512_setzero_ps();
    for (int c = 0; c < k; c++) {
        if ((c & (BF ? 1 : 0)) == 0) fetch((uintptr_t)g + (size_t)c * h * es + AHEAD);
        __m512 wv = column(g, c, h, mk, BF);
        for (int i = 0; i < M; i++)
            acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(x[(size_t)i * ldx + c]), wv, acc[i]);
    }
    for (int i = 0; i < M; i++) _mm512_mask_storeu_ps(y + (size_t)i * ldy + g0, mk, acc[i]);
}

#define DEC(BF, M)                                                                                 \
    for (int g0 = r0; g0 < r0 + nr; g0 += 16) dec_group(x, ldx, w, g0, y, ldy, BF, M);             \
    break;
#define DEC_M(BF)                                                                                  \
    switch (m) {                                                                                   \
    case 1:                                                                                        \
        DEC(BF, 1)                                                                                 \
    case 2:                                                                                        \
        DEC(BF, 2)                                                                                 \
    case 3:                                                                                        \
        DEC(BF, 3)                                                                                 \
    case 4:                                                                                        \
        DEC(BF, 4)                                                                                 \
    case 5:                                                                                        \
        DEC(BF, 5)                                                                                 \
    case 6:                                                                                        \
        DEC(BF, 6)                                                                                 \
    case 7:                                                                                        \
        DEC(BF, 7)                                                                                 \
    default:                                                                                       \
        DEC(BF, 8)                                                                                 \
    }

void mm_small_avx512(const float *x, int m, int ldx, const mm_weight *w, int r0, int nr, float *y,
                     int ldy) {
    if (w->dt == SPINE_DT_BF16) {
        DEC_M(1)
    } else {
        DEC_M(0)
    }
}

/* M input rows x NP groups of 16 outputs over kc columns: column c of group j at
 * pj + c * sj (lanes past the group's rows masked off); the sums start at zero on the first
 * block (c0 == 0) and from y after it */
static inline __attribute__((always_inline)) void micro(const float *x, int ldx, int c0, int kc,
                                                        const float *p0, size_t s0, __mmask16 m0,
                                                        const float *p1, size_t s1, __mmask16 m1,
                                                        float *y, int ldy, uintptr_t pf0,
                                                        uintptr_t pf1, const int M, const int NP) {
    __m512 acc[MR][2];
    for (int i = 0; i < M; i++) {
        if (c0 == 0) {
            acc[i][0] = _mm512_setzero_ps();
            if (NP == 2) acc[i][1] = _mm512_setzero_ps();
        } else {
            acc[i][0] = _mm512_maskz_loadu_ps(m0, y + (size_t)i * ldy);
            if (NP == 2) acc[i][1] = _mm512_maskz_loadu_ps(m1, y + (size_t)i * ldy + 16);
        }
    }
    const float *xc = x + c0;
    for (int c = 0; c < kc; c++) {
        if (pf0) { /* the first tile of a block fetches the next stretch of both streams */
            fetch(pf0 + (size_t)c * s0 * 4);
            if (NP == 2) fetch(pf1 + (size_t)c * s1 * 4);
        }
        __m512 w0 = _mm512_maskz_loadu_ps(m0, p0 + (size_t)c * s0);
        __m512 w1 = NP == 2 ? _mm512_maskz_loadu_ps(m1, p1 + (size_t)c * s1) : w0;
        for (int i = 0; i < M; i++) {
            __m512 xb = _mm512_set1_ps(xc[(size_t)i * ldx + c]);
            acc[i][0] = _mm512_fmadd_ps(xb, w0, acc[i][0]);
            if (NP == 2) acc[i][1] = _mm512_fmadd_ps(xb, w1, acc[i][1]);
        }
    }
    for (int i = 0; i < M; i++) {
        _mm512_mask_storeu_ps(y + (size_t)i * ldy, m0, acc[i][0]);
        if (NP == 2) _mm512_mask_storeu_ps(y + (size_t)i * ldy + 16, m1, acc[i][1]);
    }
}

#define MICRO(M, NP)                                                                               \
    micro(x + (size_t)i * ldx, ldx, c0, kc, q0, s0, m0, q1, s1, m1, y + (size_t)i * ldy + r, ldy,  \
          i ? 0 : pf0, pf1, M, NP)
#define TILE_ROWS(NP)                                                                              \
    do {                                                                                           \
        int i = 0;                                                                                 \
        for (; i + MR <= m; i += MR) MICRO(MR, NP);                                                \
        if (i + 8 <= m) MICRO(8, NP), i += 8;                                                      \
        if (i + 4 <= m) MICRO(4, NP), i += 4;                                                      \
        if (i + 2 <= m) MICRO(2, NP), i += 2;                                                      \
        if (i < m) MICRO(1, NP);                                                                   \
    } while (0)

void mm_tile_avx512(const float *x, int m, int ldx, const mm_weight *w, int r0, int nr, float *y,
                    int ldy, float *scratch) {
    int k = w->k, bf = w->dt == SPINE_DT_BF16;
    size_t es = bf ? 2 : 4;

    if (k <= 0) {
        for (int i = 0; i < m; i++) memset(y + (size_t)i * ldy + r0, 0, (size_t)nr * 4);
        return;
    }
    for (int r = r0; r < r0 + nr; r += 32) {
        int rows = SPINE_MIN(32, r0 + nr - r);
        int h0 = SPINE_MIN(16, w->n - r), h1 = rows > 16 ? SPINE_MIN(16, w->n - r - 16) : 0;
        __mmask16 m0 = lanes(h0), m1 = lanes(h1);
        const char *g0 = (const char *)w->data + (size_t)r * k * es;
        const char *g1 = h1 ? g0 + (size_t)16 * k * es : g0;
        for (int c0 = 0; c0 < k; c0 += KC) {
            int kc = SPINE_MIN(KC, k - c0);
            const float *q0, *q1;
            uintptr_t pf0 = 0, pf1 = 0;
            size_t s0, s1;
            if (bf) { /* widen the block: scratch[c * 32 + 16 j + q] */
                for (int c = 0; c < kc; c++) {
                    if ((c & 1) == 0) {
                        fetch((uintptr_t)g0 + (size_t)(c0 + c) * h0 * 2 + PF_AHEAD / 2);
                        if (h1) fetch((uintptr_t)g1 + (size_t)(c0 + c) * 16 * 2 + PF_AHEAD / 2);
                    }
                    _mm512_store_ps(scratch + (size_t)c * 32, column(g0, c0 + c, h0, m0, 1));
                    if (h1)
                        _mm512_store_ps(scratch + (size_t)c * 32 + 16,
                                        column(g1, c0 + c, h1, m1, 1));
                }
                q0 = scratch, q1 = scratch + 16, s0 = s1 = 32;
            } else {
                s0 = (size_t)h0, s1 = (size_t)(h1 ? h1 : 16);
                q0 = (const float *)g0 + (size_t)c0 * s0;
                q1 = h1 ? (const float *)g1 + (size_t)c0 * s1 : q0;
                pf0 = (uintptr_t)q0 + PF_AHEAD, pf1 = (uintptr_t)q1 + PF_AHEAD;
            }
            if (h1)
                TILE_ROWS(2);
            else
                TILE_ROWS(1);
        }
    }
}
