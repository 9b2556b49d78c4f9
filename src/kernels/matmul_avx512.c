/* matmul_avx512.c: AVX-512 weight products on weights laid out in panels (matmul.h: 16 rows
 * per group, column-major within it), F32 and BF16: the small-m kernel (decode) and the tiled
 * one (prefill, grouped expert products). A vector load takes one column of 16 rows; each
 * input element is broadcast against it: 16 outputs per FMA, one running sum per output, the
 * columns added in order, one FMA each. That is the scalar reference's order (mm_small_scalar),
 * so both kernels return bitwise what it returns, for every m.
 *
 * Decode streams four groups at a time, taken from four separate stretches of the task's rows,
 * each once and in order, a software prefetch 2 KiB ahead in each (four independent sums per
 * input row hide the FMA latency: they lifted BF16 from 26.7 to 31.2 GB/s in `spine bench
 * matmul --m 1 --dtype bf16`; the prefetch, once the compiler kept it, F32 28-29 -> 30.2-30.5
 * and BF16 26 -> 29.4-29.8 GB/s; into L2, or 1, 4 or 8 KiB ahead, measured no better). BF16
 * panels hold column pairs, widened with a shift and a mask.
 * Prefill: register tiles of 8 input rows x 48 outputs (three groups) over blocks of KC columns:
 * 24 accumulators, 3 panel loads and 8 broadcasts per 24 FMAs, the panel block L1-resident
 * while all input rows pass (BF16 widened to F32 once per block in scratch, by the first tile as
 * it reads the pairs where the three groups are whole: first_bf16, 5-10% ahead of a widening pass
 * of its own); the running sums wait in y between blocks. Tiles 0, 1 and 2 of a block each prefetch
 * one group's share of the next block into L2, a line per column, and the first tile prefetches its
 * own block into L1 512 bytes ahead: without that the first tile waited on DRAM for the whole block
 * and the other three fetched nothing (one thread's time was the stream's plus the compute's, to
 * within 5%, at m = 9, 16, 32, 64); with it, m = 32 from DRAM rose from 102-110 to 120
 * GFLOP/s on one thread and 197 to 225 on two (`spine bench matmul --m 32 --threads T`).
 * Prefetching two or three blocks ahead, or into L1, measured lower; packing the input rows,
 * no better. 8 x 48 measured about 8% ahead of 12 x 32 and 6 x 64 (`spine bench matmul
 * --m 32`, KC 128 / 192 / 256).
 * The layout is chosen for prefill: against the row-major AVX2 kernels, panels measured well
 * ahead in prefill and a little behind in decode (docs/BENCHMARKS.md). */
#include "matmul.h"

#include <immintrin.h>

#define KC MM_PANEL_COLS
#define AHEAD 2048  /* bytes: decode's software prefetch distance in each group's stream */
#define L1AHEAD 512 /* bytes: prefill's first tile of a block, prefetch into L1 in each panel */
#define MR 8        /* input rows per register tile */
_Static_assert(MR == 8, "TILE_ROWS takes the rest of the rows (up to 7, or 9-10) in 1-2 passes");
_Static_assert(KC % 2 == 0, "BF16 column pairs never straddle a block");
#define NPMAX 3 /* groups of 16 outputs per register tile (MM_TILE_SPAN = 16 NPMAX rows) */
_Static_assert(MM_TILE_SPAN == 16 * NPMAX, "matmul.h's tile span");

static inline __mmask16 lanes(int rows) {
    return rows >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (rows > 0 ? rows : 0)) - 1);
}

/* Prefetch AHEAD bytes past p, the address formed as an integer: it may lie past the weights
 * (a prefetch never faults), where pointer arithmetic may not go. always_inline: as a plain
 * `static inline` helper, GCC 12 -O3 left it uninlined in the decode kernel, judged the call
 * free of effects and deleted it, so decode ran without any software prefetch until
 * 2026-11-30 (tests/cli/test_prefetch.sh now checks the instructions are there). */
static inline __attribute__((always_inline)) void ahead(const char *p) {
    _mm_prefetch((const char *)((uintptr_t)p + AHEAD), _MM_HINT_T0);
}

/* column c of a group of h rows (the lanes past h are zero); BF16: only an odd k's last */
static inline __m512 column(const char *g, int c, int h, __mmask16 mk, const int BF) {
    if (BF) {
        __m256i v = _mm256_maskz_loadu_epi16(mk, (const uint16_t *)g + (size_t)c * h);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
    }
    return _mm512_maskz_loadu_ps(mk, (const float *)g + (size_t)c * h);
}

/* BF16 columns c (even) and c + 1 of a group of h rows, widened exactly: each 32-bit lane holds
 * the pair, (pair << 16) is column c and (pair & 0xffff0000) column c + 1 */
static inline void column_pair(const char *g, int c, int h, __m512 *even, __m512 *odd) {
    __mmask32 mk = h >= 16 ? (__mmask32)0xffffffffu : (__mmask32)((1u << (2 * h)) - 1);
    __m512i p = _mm512_maskz_loadu_epi16(mk, (const uint16_t *)g + (size_t)c * h);
    *even = _mm512_castsi512_ps(_mm512_slli_epi32(p, 16));
    *odd = _mm512_castsi512_ps(_mm512_and_si512(p, _mm512_set1_epi32((int)0xffff0000u)));
}

/* Decode: M (1..8) input rows against G groups of rows from g0 at once: G independent sums
 * per input row hide the FMA latency (one group alone, BF16 would be bound by it: a dependent
 * FMA per 32 bytes). */
static inline __attribute__((always_inline)) void dec_groups(const float *x, int ldx,
                                                             const mm_weight *w, int g0, int gs,
                                                             float *y, int ldy, const int BF,
                                                             const int M, const int G) {
    int k = w->k;
    size_t es = BF ? 2 : 4;
    const char *g[4];
    int h[4];
    __mmask16 mk[4];
    for (int j = 0; j < G; j++) {
        h[j] = SPINE_MIN(16, w->n - (g0 + gs * j));
        mk[j] = lanes(h[j]);
        g[j] = (const char *)w->data + (size_t)(g0 + gs * j) * k * es;
    }
    __m512 acc[8][4];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < G; j++) acc[i][j] = _mm512_setzero_ps();
    int c = 0;
    for (; BF && c + 2 <= k; c += 2)
        for (int j = 0; j < G; j++) {
            __m512 we, wo;
            ahead(g[j] + (size_t)c * h[j] * 2);
            column_pair(g[j], c, h[j], &we, &wo);
            for (int i = 0; i < M; i++)
                acc[i][j] = _mm512_fmadd_ps(_mm512_set1_ps(x[(size_t)i * ldx + c]), we, acc[i][j]);
            for (int i = 0; i < M; i++)
                acc[i][j] =
                    _mm512_fmadd_ps(_mm512_set1_ps(x[(size_t)i * ldx + c + 1]), wo, acc[i][j]);
        }
    for (; c < k; c++)
        for (int j = 0; j < G; j++) {
            if (!BF) ahead(g[j] + (size_t)c * h[j] * 4);
            __m512 wv = column(g[j], c, h[j], mk[j], BF);
            for (int i = 0; i < M; i++)
                acc[i][j] = _mm512_fmadd_ps(_mm512_set1_ps(x[(size_t)i * ldx + c]), wv, acc[i][j]);
        }
    for (int i = 0; i < M; i++)
        for (int j = 0; j < G; j++)
            _mm512_mask_storeu_ps(y + (size_t)i * ldy + g0 + gs * j, mk[j], acc[i][j]);
}

#define DEC(BF, M)                                                                                 \
    {                                                                                              \
        const int G = (M) <= 4 ? 4 : 2;                                                            \
        int ng = (nr + 15) / 16, q = ng / G;                                                       \
        for (int i = 0; i < q; i++) dec_groups(x, ldx, w, r0 + 16 * i, 16 * q, y, ldy, BF, M, G);  \
        for (int g0 = r0 + 16 * G * q; g0 < r0 + nr; g0 += 16)                                     \
            dec_groups(x, ldx, w, g0, 16, y, ldy, BF, M, 1);                                       \
    }                                                                                              \
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

/* Input row i's element at column offset o, broadcast: rows 0-3 from x0, 4-7 from x4, at 0, L,
 * 2L and L3 = 3L (two bases and two strides take fewer registers than eight row pointers, which
 * spilled) */
static inline __attribute__((always_inline)) __m512
row_elem(const float *x0, const float *x4, ptrdiff_t L, ptrdiff_t L3, int i, int o) {
    const float *r = (i < 4 ? x0 : x4) + o;
    switch (i & 3) {
    case 0:
        return _mm512_set1_ps(r[0]);
    case 1:
        return _mm512_set1_ps(r[L]);
    case 2:
        return _mm512_set1_ps(r[2 * L]);
    default:
        return _mm512_set1_ps(r[L3]);
    }
}

/* M input rows x NP groups of 16 outputs over kc columns: column c of group j at
 * p[j] + c * sp[j] (lanes past the group's rows masked off); the sums start at zero on the
 * first block (c0 == 0) and from y after it. */
static inline __attribute__((always_inline)) void
micro(const float *x, int ldx, int c0, int kc, const float *const *p, const size_t *sp,
      const __mmask16 *mk, float *y, int ldy, const int M, const int NP, const char *pf, size_t pfs,
      const int FIRST, const int FULL) {
    __m512 acc[MR][NPMAX];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < NP; j++)
            acc[i][j] = c0 == 0 ? _mm512_setzero_ps()
                                : _mm512_maskz_loadu_ps(mk[j], y + (size_t)i * ldy + 16 * j);
    /* (row_elem; x4 only where those rows exist) */
    const float *x0 = x + c0, *x4 = M > 4 ? x0 + 4 * (ptrdiff_t)ldx : x0;
    const ptrdiff_t L = ldx, L3 = 3 * (ptrdiff_t)ldx;
    for (int c = 0; c < kc; c++, x0++, x4++) {
        __m512 wv[NPMAX];
        for (int j = 0; j < NP; j++) /* (unmasked: 9% faster in L1, measured) */
            wv[j] = FULL ? _mm512_loadu_ps(p[j] + (size_t)c * sp[j])
                         : _mm512_maskz_loadu_ps(mk[j], p[j] + (size_t)c * sp[j]);
        _mm_prefetch((const char *)((uintptr_t)pf + (size_t)c * pfs), _MM_HINT_T1);
        if (FIRST)
            for (int j = 0; j < NP; j++)
                _mm_prefetch((const char *)((uintptr_t)(p[j] + (size_t)c * sp[j]) + L1AHEAD),
                             _MM_HINT_T0);
        for (int i = 0; i < M; i++) {
            __m512 xb = row_elem(x0, x4, L, L3, i, 0);
            for (int j = 0; j < NP; j++) acc[i][j] = _mm512_fmadd_ps(xb, wv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < M; i++)
        for (int j = 0; j < NP; j++)
            _mm512_mask_storeu_ps(y + (size_t)i * ldy + 16 * j, mk[j], acc[i][j]);
}

/* BF16, three whole groups, an even kc: the block's first tile widens each column pair as it
 * reads it (storing the widened columns for the other tiles) instead of a widening pass before
 * it; the same sums in the same order as micro. */
static inline __attribute__((always_inline)) void first_bf16(const float *x, int ldx, int c0,
                                                             int kc, const char *const *g,
                                                             float *wb, float *y, int ldy,
                                                             const char *pf, size_t pfs) {
    __m512 acc[MR][NPMAX];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NPMAX; j++)
            acc[i][j] =
                c0 == 0 ? _mm512_setzero_ps() : _mm512_loadu_ps(y + (size_t)i * ldy + 16 * j);
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
    const float *x0 = x + c0, *x4 = x0 + 4 * (ptrdiff_t)ldx;
    const ptrdiff_t L = ldx, L3 = 3 * (ptrdiff_t)ldx;
    for (int c = 0; c < kc; c += 2, x0 += 2, x4 += 2) {
        __m512 we[NPMAX], wo[NPMAX];
        for (int j = 0; j < NPMAX; j++) {
            const char *a = g[j] + (size_t)(c0 + c) * 32; /* the pair's 16 rows: 64 bytes */
            __m512i pr = _mm512_loadu_si512(a);
            _mm_prefetch((const char *)((uintptr_t)a + L1AHEAD), _MM_HINT_T0);
            we[j] = _mm512_castsi512_ps(_mm512_slli_epi32(pr, 16));
            wo[j] = _mm512_castsi512_ps(_mm512_and_si512(pr, hi));
            _mm512_store_ps(wb + (size_t)c * 16 * NPMAX + 16 * j, we[j]);
            _mm512_store_ps(wb + (size_t)(c + 1) * 16 * NPMAX + 16 * j, wo[j]);
        }
        _mm_prefetch((const char *)((uintptr_t)pf + (size_t)c * pfs), _MM_HINT_T1);
        for (int h = 0; h < 2; h++)
            for (int i = 0; i < MR; i++) {
                __m512 xb = row_elem(x0, x4, L, L3, i, h);
                for (int j = 0; j < NPMAX; j++)
                    acc[i][j] = _mm512_fmadd_ps(xb, h ? wo[j] : we[j], acc[i][j]);
            }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NPMAX; j++) _mm512_storeu_ps(y + (size_t)i * ldy + 16 * j, acc[i][j]);
}

/* tile rows i.., prefetching group PG's share of the next block (the last group's past the third
 * tile) */
#define MICRO_P(M, NP, F, PG)                                                                      \
    micro(x + (size_t)i * ldx, ldx, c0, kc, q, sq, mk, y + (size_t)i * ldy + r, ldy, M, NP,        \
          nx[SPINE_MIN(PG, NPMAX - 1)], nxs[SPINE_MIN(PG, NPMAX - 1)], F, full)
#define MICRO_F(M, NP, F) MICRO_P(M, NP, F, i / MR)
#define MICRO(M, NP) MICRO_F(M, NP, 0)
/* FULL: every lane of the NP groups' columns may be loaded (16-row groups, or the widened
 * BF16 block, zero past its rows) */
#define TILE_ROWS(NP, FULL)                                                                        \
    do {                                                                                           \
        int i = 0; /* m > MR (smaller m takes mm_small_avx512): the first tile is whole */         \
        const int full = (FULL);                                                                   \
        if (fused)                                                                                 \
            first_bf16(x, ldx, c0, kc, g, scratch, y + r, ldy, nx[0], nxs[0]);                     \
        else if (bf)                                                                               \
            MICRO(MR, NP);                                                                         \
        else                                                                                       \
            MICRO_F(MR, NP, 1);                                                                    \
        /* a rest of 1 or 2 rows alone is bound by the FMA latency (3 or 6 independent sums): it   \
         * goes with the last whole tile as two tiles of 4-5 rows */                               \
        const int pair = (m % MR == 1 || m % MR == 2) && m >= 2 * MR;                              \
        for (i = MR; i + MR <= m - (pair ? MR : 0); i += MR) MICRO(MR, NP);                        \
        switch (m - i) { /* the rest in one pass over the block */                                 \
        case 10:                                                                                   \
            MICRO_P(5, NP, 0, i / MR);                                                             \
            i += 5;                                                                                \
            MICRO_P(5, NP, 0, i / MR + 1);                                                         \
            break;                                                                                 \
        case 9:                                                                                    \
            MICRO_P(5, NP, 0, i / MR);                                                             \
            i += 5;                                                                                \
            MICRO_P(4, NP, 0, i / MR + 1);                                                         \
            break;                                                                                 \
        case 7:                                                                                    \
            MICRO(7, NP);                                                                          \
            break;                                                                                 \
        case 6:                                                                                    \
            MICRO(6, NP);                                                                          \
            break;                                                                                 \
        case 5:                                                                                    \
            MICRO(5, NP);                                                                          \
            break;                                                                                 \
        case 4:                                                                                    \
            MICRO(4, NP);                                                                          \
            break;                                                                                 \
        case 3:                                                                                    \
            MICRO(3, NP);                                                                          \
            break;                                                                                 \
        case 2:                                                                                    \
            MICRO(2, NP);                                                                          \
            break;                                                                                 \
        case 1:                                                                                    \
            MICRO(1, NP);                                                                          \
            break;                                                                                 \
        }                                                                                          \
    } while (0)

/* Where the task's next panel block starts in each of its (up to) three groups (past the task's
 * rows: the weights' first line, in cache already) and its bytes per column: tile j of the current
 * block prefetches group j's part of it into L2 while it computes (the panels stream at an even
 * pace instead of in bursts: the first tile of a block would otherwise wait on DRAM for all of it,
 * the other tiles on nothing). */
static void next_block(const mm_weight *w, int r0, int nr, int r, int c0, const char **nx,
                       size_t *nxs) {
    int k = w->k, nb = (k + KC - 1) / KC, b = c0 / KC + 1;
    int rr = r + MM_TILE_SPAN * (b / nb), cc = (b % nb) * KC;
    size_t es = w->dt == SPINE_DT_BF16 ? 2 : 4;
    for (int j = 0; j < NPMAX; j++) {
        int g0 = rr + 16 * j, h = SPINE_MIN(16, w->n - g0);
        nx[j] = w->data; /* none: a harmless prefetch of lines in cache already */
        nxs[j] = 0;
        if (g0 >= r0 + nr) continue;
        nx[j] = (const char *)w->data + ((size_t)g0 * k + (size_t)cc * h) * es;
        nxs[j] = (size_t)h * es;
    }
}

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
            const char *nx[NPMAX];
            size_t nxs[NPMAX];
            next_block(w, r0, nr, r, c0, nx, nxs);
            for (int j = 0; j < NPMAX; j++) {
                if (bf) { /* the block widened: scratch[c * 16 np + 16 j + lane] */
                    q[j] = scratch + 16 * j;
                    sq[j] = (size_t)(16 * np);
                } else {
                    sq[j] = (size_t)h[j];
                    q[j] = (const float *)g[j] + (size_t)c0 * sq[j];
                }
            }
            /* BF16: the block widened into scratch, by the first tile where it can (first_bf16) */
            const int fused = bf && np == NPMAX && h[NPMAX - 1] == 16 && kc % 2 == 0;
            for (int c = 0; c < kc && bf && !fused; c += 2) /* (KC is even, c0 too) */
                for (int j = 0; j < np; j++) {
                    float *o = scratch + (size_t)c * 16 * np + 16 * j;
                    if (c0 + c + 2 <= k) {
                        __m512 we, wo;
                        column_pair(g[j], c0 + c, h[j], &we, &wo);
                        _mm512_store_ps(o, we);
                        _mm512_store_ps(o + 16 * np, wo);
                    } else {
                        _mm512_store_ps(o, column(g[j], c0 + c, h[j], mk[j], 1));
                    }
                }
            switch (np) {
            case 1:
                TILE_ROWS(1, 0);
                break;
            case 2:
                TILE_ROWS(2, 0);
                break;
            default:
                if (bf || h[NPMAX - 1] == 16)
                    TILE_ROWS(3, 1);
                else
                    TILE_ROWS(3, 0);
                break;
            }
        }
    }
}
