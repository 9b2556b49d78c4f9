/* matmul_avx512.c: AVX-512 weight products on weights laid out in panels (matmul.h: 16 rows
 * per group, column-major within it), F32 and BF16: the small-m kernel (decode) and the tiled
 * one (prefill, grouped expert products). A vector load takes one column of 16 rows; each
 * input element is broadcast against it: 16 outputs per FMA, one running sum per output, the
 * columns added in order, one FMA each. That is the scalar reference's order (mm_small_scalar),
 * so both kernels return bitwise what it returns, for every m.
 *
 * Decode streams each group once: one sequential stream per group, which the hardware
 * prefetcher follows (a software prefetch 2 KiB ahead, as the row-major AVX2 kernel has,
 * measured no gain here).
 * Prefill: register tiles of 8 input rows x 48 outputs (three groups) over blocks of KC columns:
 * 24 accumulators, 3 panel loads and 8 broadcasts per 24 FMAs, the panel block L1-resident
 * while all input rows pass (BF16 widened to F32 once per block in scratch), its streams left
 * to the hardware prefetcher (a software prefetch of the next block measured no gain); the
 * running sums wait in y between blocks. (8 x 48 against
 * 12 x 32 and 6 x 64, KC 128 / 192 / 256: `spine bench matmul --m 32`, about 8% ahead.) */
#include "matmul.h"

#include <immintrin.h>

#define KC MM_PANEL_COLS
#define MR 8    /* input rows per register tile */
#define NPMAX 3 /* groups of 16 outputs per register tile (MM_TILE_SPAN = 16 NPMAX rows) */
_Static_assert(MM_TILE_SPAN == 16 * NPMAX, "matmul.h's tile span");

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
 * p[j] + c * sp[j] (lanes past the group's rows masked off); the sums start at zero on the
 * first block (c0 == 0) and from y after it. */
static inline __attribute__((always_inline)) void micro(const float *x, int ldx, int c0, int kc,
                                                        const float *const *p, const size_t *sp,
                                                        const __mmask16 *mk, float *y, int ldy,
                                                        const int M, const int NP) {
    __m512 acc[MR][NPMAX];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < NP; j++)
            acc[i][j] = c0 == 0 ? _mm512_setzero_ps()
                                : _mm512_maskz_loadu_ps(mk[j], y + (size_t)i * ldy + 16 * j);
    const float *xc = x + c0;
    for (int c = 0; c < kc; c++) {
        __m512 wv[NPMAX];
        for (int j = 0; j < NP; j++) wv[j] = _mm512_maskz_loadu_ps(mk[j], p[j] + (size_t)c * sp[j]);
        for (int i = 0; i < M; i++) {
            __m512 xb = _mm512_set1_ps(xc[(size_t)i * ldx + c]);
            for (int j = 0; j < NP; j++) acc[i][j] = _mm512_fmadd_ps(xb, wv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < M; i++)
        for (int j = 0; j < NP; j++)
            _mm512_mask_storeu_ps(y + (size_t)i * ldy + 16 * j, mk[j], acc[i][j]);
}

#define MICRO(M, NP)                                                                               \
    micro(x + (size_t)i * ldx, ldx, c0, kc, q, sq, mk, y + (size_t)i * ldy + r, ldy, M, NP)
#define TILE_ROWS(NP)                                                                              \
    do {                                                                                           \
        int i = 0;                                                                                 \
        for (; i + MR <= m; i += MR) MICRO(MR, NP);                                                \
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
    for (int r = r0; r < r0 + nr; r += MM_TILE_SPAN) {
        int np = (SPINE_MIN(MM_TILE_SPAN, r0 + nr - r) + 15) / 16; /* groups in this span */
        const char *g[NPMAX];
        int h[NPMAX];
        __mmask16 mk[NPMAX];
        for (int j = 0; j < NPMAX; j++) {
            int jj = j < np ? j : 0;
            h[j] = SPINE_MIN(16, w->n - (r + 16 * jj));
            mk[j] = j < np ? lanes(h[j]) : 0;
            g[j] = (const char *)w->data + (size_t)(r + 16 * jj) * k * es;
        }
        for (int c0 = 0; c0 < k; c0 += KC) {
            int kc = SPINE_MIN(KC, k - c0);
            const float *q[NPMAX];
            size_t sq[NPMAX];
            for (int j = 0; j < NPMAX; j++) {
                if (bf) { /* the block widened: scratch[c * 16 np + 16 j + lane] */
                    q[j] = scratch + 16 * j;
                    sq[j] = (size_t)(16 * np);
                } else {
                    sq[j] = (size_t)h[j];
                    q[j] = (const float *)g[j] + (size_t)c0 * sq[j];
                }
            }
            for (int c = 0; c < kc && bf; c++)
                for (int j = 0; j < np; j++)
                    _mm512_store_ps(scratch + (size_t)c * 16 * np + 16 * j,
                                    column(g[j], c0 + c, h[j], mk[j], 1));
            switch (np) {
            case 1:
                TILE_ROWS(1);
                break;
            case 2:
                TILE_ROWS(2);
                break;
            default:
                TILE_ROWS(3);
                break;
            }
        }
    }
}
