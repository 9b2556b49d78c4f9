/* matmul_amx.c: weight products on Intel AMX tiles (AMX-TILE and AMX-BF16: Sapphire Rapids and
 * later) for F32 inputs and F32 or BF16 weights in panels, to within F32 rounding. The tile unit
 * multiplies BF16 pairs and sums in F32; an F32 value v splits exactly into three BF16 parts, v =
 * v1 + v2 + v3 (v1: v with its low 16 bits cleared, v2 the same of v - v1, v3 of the rest: 8
 * significant bits each, 24 in all), and the products of the six part pairs whose size reaches
 * 2^-16 of the leading one (x1w1, x1w2, x2w1, x1w3, x2w2, x3w1) give x . w to within about 2^-24 of
 * each product, what an F32 multiply-add rounds away. The sums run in another order than the
 * AVX-512 kernels' (each product pair summed, then added), so results differ from theirs in the
 * last bits, not more; the tests hold them to an F32 error bound. BF16 weights need no split: their
 * column pairs in the panels are B tiles as they lie, and three products (x1w, x2w, x3w) are exact.
 *
 * Inputs are split once per job (mm_amx_split_x, A tiles: 16 rows x 32 columns per KiB); the
 * weights, in matmul.h's panels (16 rows per group, one column of the group per 64 bytes), a
 * chunk of 32 columns at a time into VNNI B tiles (column pairs interleaved per row) while the
 * tile unit multiplies the previous chunk: the split (vector ALU) and the products (tile unit)
 * run side by side, and the split's loads are the weights' one pass through the core, with a
 * software prefetch PFD chunks ahead. Output tiles, in tile registers for the whole k: up to 32
 * input rows, 2 x 2 tiles of 16 x 16 (two groups of weight rows); 33-64 rows, 3-4 x 1 ("tall":
 * the chunk's three B parts held, the A parts loaded in turn); more rows, passes of 2 x 2 over
 * the span's split weights, kept whole (L2), so the weights are read and split once.
 *
 * `spine bench matmul --n 3584 --k 1024 --threads 2` on the project's 2-vCPU Xeon (AVX-512 FMA
 * peak 236 GFLOP/s per core), weights streamed from DRAM, against SPINE_AMX=0 (the AVX-512
 * tiles) in the same minutes: m 32 341-352 vs 248-250 GFLOP/s, m 40 298-326 vs 250-255, m 64
 * 431 vs 281; m 24 239-265 vs 226-228 (at 20-22 GB/s of weights, near what this read pattern
 * gets). */
#include "matmul.h"

#include <immintrin.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PFD 4 /* chunks: the weights' software prefetch distance (2-8 measured within 5%) */
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

typedef struct tilecfg {
    uint8_t palette, start;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tilecfg;

bool mm_amx_runs(void) {
    static _Atomic int st = -1;
    int s = atomic_load_explicit(&st, memory_order_acquire);
    if (s < 0) {
        unsigned a, b, c, d;
        __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
        bool cpu = (d >> 22 & 1) && (d >> 24 & 1); /* AMX-BF16, AMX-TILE */
        /* the kernel hands out the tile state only on request (Linux 5.16 and later) */
        s = cpu && syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
        atomic_store_explicit(&st, s, memory_order_release);
    }
    return s == 1;
}

/* Tiles of 16 rows of 64 bytes; with one pass of at most 32 input rows (m <= 32), the last
 * m-tile's C and A tiles (m1: C 2-3 and A 5; m <= 16: C 0-1 and A 4) hold only its rows, and
 * the tile unit spends its time on those alone. */
static void tiles_on(int m) {
    tilecfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int i = 0; i < 8; i++) {
        c.rows[i] = 16;
        c.colsb[i] = 64;
    }
    if (m <= 16) {
        c.rows[0] = c.rows[1] = c.rows[4] = (uint8_t)m;
    } else if (m < 32) {
        c.rows[2] = c.rows[3] = c.rows[5] = (uint8_t)(m - 16);
    }
    _tile_loadconfig(&c);
}

/* v's three BF16 parts, each as F32 bits with the low half zero */
static inline __attribute__((always_inline)) void split3(__m512 v, __m512i *p1, __m512i *p2,
                                                         __m512i *p3) {
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
    *p1 = _mm512_and_si512(_mm512_castps_si512(v), hi);
    __m512 r = _mm512_sub_ps(v, _mm512_castsi512_ps(*p1)); /* exact */
    *p2 = _mm512_and_si512(_mm512_castps_si512(r), hi);
    r = _mm512_sub_ps(r, _mm512_castsi512_ps(*p2)); /* exact */
    *p3 = _mm512_and_si512(_mm512_castps_si512(r), hi);
}

/* one B tile row: lane q holds (BF16 of column c, of column c + 1) of weight row q */
static inline __attribute__((always_inline)) __m512i pair(__m512i ev, __m512i od) {
    return _mm512_or_si512(od, _mm512_srli_epi32(ev, 16));
}

size_t mm_amx_x_bytes(int m, int k) {
    return (size_t)3 * (size_t)((m + 15) / 16) * (size_t)((k + 31) / 32) * 1024;
}

/* A tiles: xa[((part * mtiles + mt) * nch + t) * 512 + row * 32 + col] (BF16), rows past m and
 * columns past k zero */
void mm_amx_split_x(const float *x, int m, int ldx, int k, uint16_t *xa) {
    const int mtiles = (m + 15) / 16, nch = (k + 31) / 32;
    const size_t part = (size_t)mtiles * nch * 512;
    const __m512i odd =
        _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27,
                         25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    for (int i = 0; i < mtiles * 16; i++)
        for (int t = 0; t < nch; t++) {
            __m512i p[2][3];
            for (int h = 0; h < 2; h++) {
                int c = 32 * t + 16 * h, n = i < m ? SPINE_MIN(16, k - c) : 0;
                __mmask16 mk =
                    n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << SPINE_MAX(n, 0)) - 1);
                __m512 v = n > 0 ? _mm512_maskz_loadu_ps(mk, x + (size_t)i * ldx + c)
                                 : _mm512_setzero_ps();
                split3(v, &p[h][0], &p[h][1], &p[h][2]);
            }
            uint16_t *d = xa + ((size_t)(i / 16) * nch + t) * 512 + (size_t)(i % 16) * 32;
            for (int q = 0; q < 3; q++) /* the high halves: columns 0-15, then 16-31 */
                _mm512_storeu_si512(d + q * part, _mm512_permutex2var_epi16(p[0][q], odd, p[1][q]));
        }
}

/* split column pairs [i0, i1) of chunk t (pair i: group i / 16, columns 32t + 2(i % 16) and the
 * next) into the chunk's B tiles b[part][group][16][32]; prefetch the same lines of chunk t + PFD
 * (pf[group]: that chunk's first column, as an address: it may lie past the weights) */
static inline __attribute__((always_inline)) void split_w(const int NG, const float *const *g,
                                                          int k, int t, int i0, int i1, uint16_t *b,
                                                          const uintptr_t *pf) {
    for (int i = i0; i < i1; i++) {
        const int j = NG == 2 ? i >> 4 : 0, kp = i & 15, c = 32 * t + 2 * kp;
        const float *p = g[j] + (size_t)c * 16;
        __m512 ev, od;
        if (c + 2 <= k) { /* (a mapped file's weights need not be 64-byte aligned) */
            ev = _mm512_loadu_ps(p);
            od = _mm512_loadu_ps(p + 16);
        } else {
            ev = c < k ? _mm512_loadu_ps(p) : _mm512_setzero_ps();
            od = _mm512_setzero_ps();
        }
        _mm_prefetch((const char *)(pf[j] + (uintptr_t)kp * 128), _MM_HINT_T1);
        _mm_prefetch((const char *)(pf[j] + (uintptr_t)kp * 128 + 64), _MM_HINT_T1);
        __m512i e1, e2, e3, o1, o2, o3;
        split3(ev, &e1, &e2, &e3);
        split3(od, &o1, &o2, &o3);
        uint16_t *d = b + (size_t)j * 512 + (size_t)kp * 32;
        _mm512_store_si512(d, pair(e1, o1));
        _mm512_store_si512(d + 2 * 512, pair(e2, o2));
        _mm512_store_si512(d + 4 * 512, pair(e3, o3));
    }
}

/* the products of one chunk (A tiles at a: part stride ap, second m-tile at a + 512 * nch), B
 * tiles at b (part stride 1024 elements, group 512), into C tiles 0-3; the weight split of the
 * next chunk (if SPLIT) in six slices between them */
#define TDP(MT, NG)                                                                                \
    do {                                                                                           \
        _tile_dpbf16ps(0, 4, 6);                                                                   \
        if (NG == 2) _tile_dpbf16ps(1, 4, 7);                                                      \
        if (MT == 2) _tile_dpbf16ps(2, 5, 6);                                                      \
        if (MT == 2 && NG == 2) _tile_dpbf16ps(3, 5, 7);                                           \
    } while (0)
#define LOAD_A(MT, P)                                                                              \
    do {                                                                                           \
        _tile_loadd(4, a + (P)*ap, 64);                                                            \
        if (MT == 2) _tile_loadd(5, a + (P)*ap + a2, 64);                                          \
    } while (0)
#define LOAD_B(NG, P)                                                                              \
    do {                                                                                           \
        _tile_loadd(6, b + (P)*1024, 64);                                                          \
        if (NG == 2) _tile_loadd(7, b + (P)*1024 + 512, 64);                                       \
    } while (0)
#define SLICE(q) split_w(NG, ng, k, nt, (q)*np / 6, ((q) + 1) * np / 6, nb, pf)
#define NO_SLICE(q) (void)0
/* part pairs (x, w): (1,1) (1,2) (1,3) (2,2) (2,1) (3,1), S(q) between them */
#define PRODUCTS_2X2(S)                                                                            \
    do {                                                                                           \
        LOAD_A(MT, 0);                                                                             \
        LOAD_B(NG, 0);                                                                             \
        TDP(MT, NG);                                                                               \
        S(0);                                                                                      \
        LOAD_B(NG, 1);                                                                             \
        TDP(MT, NG);                                                                               \
        S(1);                                                                                      \
        LOAD_B(NG, 2);                                                                             \
        TDP(MT, NG);                                                                               \
        S(2);                                                                                      \
        LOAD_A(MT, 1);                                                                             \
        LOAD_B(NG, 1);                                                                             \
        TDP(MT, NG);                                                                               \
        S(3);                                                                                      \
        LOAD_B(NG, 0);                                                                             \
        TDP(MT, NG);                                                                               \
        S(4);                                                                                      \
        LOAD_A(MT, 2);                                                                             \
        TDP(MT, NG);                                                                               \
        S(5);                                                                                      \
    } while (0)
/* 3-4 m-tiles of one group: m-tile C's products with the three B parts held in tiles 5-7, the
 * part pairs in the 2 x 2 passes' order (so a row's sums do not depend on m, past 8 rows) */
#define TALL(C)                                                                                    \
    do {                                                                                           \
        _tile_loadd(4, a + (C)*a2, 64);                                                            \
        _tile_dpbf16ps(C, 4, 5);                                                                   \
        _tile_dpbf16ps(C, 4, 6);                                                                   \
        _tile_dpbf16ps(C, 4, 7);                                                                   \
        _tile_loadd(4, a + ap + (C)*a2, 64);                                                       \
        _tile_dpbf16ps(C, 4, 6);                                                                   \
        _tile_dpbf16ps(C, 4, 5);                                                                   \
        _tile_loadd(4, a + 2 * ap + (C)*a2, 64);                                                   \
        _tile_dpbf16ps(C, 4, 5);                                                                   \
    } while (0)
#define SLICE_T(q)                                                                                 \
    if (ng) split_w(1, ng, k, nt, (q)*16 / MT, ((q) + 1) * 16 / MT, nb, pf)

/* C tiles out (tile 2 mi + j, or mi when tall): whole tiles straight into y, a last short one
 * through the stage */
static inline __attribute__((always_inline)) void c_out(const int MT, const int NG, float *y,
                                                        int ldy, int yrows, float *stage) {
    for (int mi = 0; mi < MT; mi++)
        for (int j = 0; j < NG; j++) {
            int rows = SPINE_MIN(16, yrows - 16 * mi);
            float *d = y + (size_t)(16 * mi) * ldy + 16 * j;
            float *s = rows == 16 ? d : stage;
            size_t st = rows == 16 ? (size_t)ldy * sizeof(float) : 64;
            switch (MT >= 3 ? mi : 2 * mi + j) {
            case 0:
                _tile_stored(0, s, st);
                break;
            case 1:
                _tile_stored(1, s, st);
                break;
            case 2:
                _tile_stored(2, s, st);
                break;
            default:
                _tile_stored(3, s, st);
                break;
            }
            if (rows < 16)
                for (int r = 0; r < rows; r++)
                    memcpy(d + (size_t)r * ldy, stage + 16 * r, 16 * sizeof(float));
        }
}

/* One pass over a span of NG groups (16 NG weight rows from g[0]) for MT m-tiles of input rows
 * (A tiles at a), C into y (rows: yrows of them valid; columns 16 NG). SPLIT: this pass also
 * splits the weights (chunk t into wb + t * 3072 elements, or the ring slot t % 2 when ring),
 * the next span's first chunk last if there is one (nextg); else it reads what an earlier pass
 * split. */
static inline __attribute__((always_inline)) void
span_pass(const int MT, const int NG, const int SPLIT, const float *const *g,
          const float *const *nextg, int k, const uint16_t *a, size_t ap, size_t a2, uint16_t *wb,
          int slot, bool ring, float *y, int ldy, int yrows, float *stage) {
    const int nch = (k + 31) / 32, np = 16 * NG;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int t = 0; t < nch; t++, a += 512) {
        const uint16_t *b = wb + (size_t)(ring ? ((slot + t) & 1) : t) * 3072;
        /* what to split while this chunk's products run: the next chunk of this span, or the
         * next span's first (when the caller has one) */
        const float *const *ng = !SPLIT ? NULL : t + 1 < nch ? g : nextg;
        int nt = t + 1 < nch ? t + 1 : 0;
        uint16_t *nb = wb + (size_t)(ring ? ((slot + t + 1) & 1) : t + 1) * 3072;
        uintptr_t pf[2] = {0, 0};
        if (ng) {
            /* prefetch chunk nt + PFD of the same groups; past their end, the next span's */
            int u = nt + PFD;
            for (int j = 0; j < NG; j++)
                pf[j] = u < nch ? (uintptr_t)(ng[j] + (size_t)u * 512)
                                : (uintptr_t)ng[j] + ((uintptr_t)NG * 16 * (uintptr_t)k +
                                                      (uintptr_t)(u - nch) * 512) *
                                                         sizeof(float);
        }
        if (MT >= 3) { /* NG 1: C tiles 0 to MT - 1, the chunk's three B parts in 5-7, A in 4 */
            _tile_loadd(5, b, 64);
            _tile_loadd(6, b + 1024, 64);
            _tile_loadd(7, b + 2048, 64);
            TALL(0);
            SLICE_T(0);
            TALL(1);
            SLICE_T(1);
            TALL(2);
            SLICE_T(2);
            if (MT == 4) {
                TALL(3);
                SLICE_T(3);
            }
            continue;
        }
        /* one sequence of products, with the next chunk's split between them, or without a
         * next chunk to split (a later pass, a span's last chunk with none to chain) alone */
        if (ng)
            PRODUCTS_2X2(SLICE);
        else
            PRODUCTS_2X2(NO_SLICE);
    }
    c_out(MT, NG, y, ldy, yrows, stage);
}
#undef SLICE
#undef NO_SLICE
#undef PRODUCTS_2X2
#undef SLICE_T
#undef TALL

/* the weights' first chunk of a span, split before its products start */
static void split_first(const int NG, const float *const *g, int k, uint16_t *b) {
    uintptr_t pf[2] = {(uintptr_t)g[0] + PFD * 512 * sizeof(float),
                       (uintptr_t)g[NG - 1] + PFD * 512 * sizeof(float)};
    if (NG == 2)
        split_w(2, g, k, 0, 0, 32, b, pf);
    else
        split_w(1, g, k, 0, 0, 16, b, pf);
}

/* BF16 weights: the panels' column pairs are B tiles as they lie (a chunk of a group: 16 pairs
 * of 64 bytes, 1 KiB), so only the inputs are split (x1 w + x2 w + x3 w, exact products). A
 * chunk short of 32 whole columns (k mod 32; an odd k's last column, stored alone) is copied
 * into a zero-padded tile at tail first (what lies past the group's columns is not read). */
static const uint16_t *bf16_chunk(const uint16_t *gp, int k, int t, uint16_t *tail) {
    const int c0 = 32 * t, whole = k & ~1;
    if (c0 + 32 <= whole) return gp + (size_t)c0 * 16;
    memset(tail, 0, 1024);
    if (whole > c0) memcpy(tail, gp + (size_t)c0 * 16, (size_t)(whole - c0) / 2 * 64);
    if (k & 1) /* column k - 1: 16 values, the even half of the last pair row */
        for (int q = 0; q < 16; q++)
            tail[(size_t)(k - 1 - c0) / 2 * 32 + 2 * q] = gp[(size_t)(k - 1) * 16 + q];
    return tail;
}

#define PFD_BF16 8 /* chunks: a BF16 chunk's products take a quarter of an F32 one's */

/* One pass over a span of NG BF16 groups (gp[j]) for MT m-tiles (as span_pass) */
static inline __attribute__((always_inline)) void
span_bf16(const int MT, const int NG, const uint16_t *const *gp, int k, const uint16_t *a,
          size_t ap, size_t a2, float *y, int ldy, int yrows, float *stage, uint16_t *tail) {
    const int nch = (k + 31) / 32;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int t = 0; t < nch; t++, a += 512) {
        /* the same chunk PFD_BF16 ahead into L2, the next one into L1 (the tile loads read the
         * weights themselves: +6-7% at m = 24-32 over L2 alone; the same for the F32 split's
         * loads measured no better); past the group's end, the next group's, harmless */
        for (int j = 0; j < NG; j++)
            for (int l = 0; l < 16; l++) {
                _mm_prefetch((const char *)((uintptr_t)gp[j] +
                                            ((uintptr_t)(t + PFD_BF16) * 1024 + (uintptr_t)l * 64)),
                             _MM_HINT_T1);
                _mm_prefetch((const char *)((uintptr_t)gp[j] +
                                            ((uintptr_t)(t + 1) * 1024 + (uintptr_t)l * 64)),
                             _MM_HINT_T0);
            }
        const uint16_t *b0 = bf16_chunk(gp[0], k, t, tail);
        if (MT >= 3) { /* NG 1: C tiles 0 to MT - 1, B in 7, the three A parts in 4-6 */
            _tile_loadd(7, b0, 64);
#define TALL_BF(C)                                                                                 \
    do {                                                                                           \
        _tile_loadd(4, a + (C)*a2, 64);                                                            \
        _tile_loadd(5, a + ap + (C)*a2, 64);                                                       \
        _tile_loadd(6, a + 2 * ap + (C)*a2, 64);                                                   \
        _tile_dpbf16ps(C, 4, 7);                                                                   \
        _tile_dpbf16ps(C, 5, 7);                                                                   \
        _tile_dpbf16ps(C, 6, 7);                                                                   \
    } while (0)
            TALL_BF(0);
            TALL_BF(1);
            TALL_BF(2);
            if (MT == 4) TALL_BF(3);
#undef TALL_BF
            continue;
        }
        _tile_loadd(6, b0, 64);
        if (NG == 2) _tile_loadd(7, bf16_chunk(gp[1], k, t, tail + 512), 64);
        for (int P = 0; P < 3; P++) {
            _tile_loadd(4, a + P * ap, 64);
            if (MT == 2) _tile_loadd(5, a + P * ap + a2, 64);
            _tile_dpbf16ps(0, 4, 6);
            if (NG == 2) _tile_dpbf16ps(1, 4, 7);
            if (MT == 2) _tile_dpbf16ps(2, 5, 6);
            if (MT == 2 && NG == 2) _tile_dpbf16ps(3, 5, 7);
        }
    }
    c_out(MT, NG, y, ldy, yrows, stage);
}

#define PASS_BF(MT, NG)                                                                            \
    span_bf16(MT, NG, gb, k, xa + (size_t)(2 * p) * a2, ap, a2, y + (size_t)(32 * p) * ldy + r,    \
              ldy, yrows, stage, wb)

#define PASS(MT, NG, SPLIT)                                                                        \
    span_pass(MT, NG, SPLIT, g, nextg, k, xa + (size_t)(2 * p) * a2, ap, a2, wb, slot, ring,       \
              y + (size_t)(32 * p) * ldy + r, ldy, yrows, stage)

void mm_tile_amx(const uint16_t *xa, int m, const mm_weight *w, int r0, int nr, float *y, int ldy,
                 uint16_t *wb, float *stage) {
    const int k = w->k, nch = (k + 31) / 32, mtiles = (m + 15) / 16;
    const size_t ap = (size_t)mtiles * nch * 512, a2 = (size_t)nch * 512;
    /* up to 64 input rows, one pass per span: 2 m-tiles x 2 groups of outputs, or 3-4 m-tiles x
     * 1 group ("tall"), two chunks of split weights in a ring, the next span's first chunk split
     * during this one's last; more rows: passes of 2 x 2 over the span's split weights, kept
     * whole */
    const bool tall = mtiles >= 3 && mtiles <= 4, ring = mtiles <= 4;
    const int maxg = tall ? 1 : 2;
    tiles_on(m);
    if (w->dt == SPINE_DT_BF16) {
        const uint16_t *bb = w->data;
        for (int r = r0; r < r0 + nr;) {
            const int NG = SPINE_MIN(tall ? 1 : 2, (r0 + nr - r) / 16);
            if (NG == 0) break; /* (whole groups only: the caller's promise) */
            const uint16_t *gb[2] = {bb + (size_t)r * k, bb + (size_t)(r + 16 * (NG - 1)) * k};
            if (tall) {
                const int p = 0, yrows = m;
                if (mtiles == 3)
                    PASS_BF(3, 1);
                else
                    PASS_BF(4, 1);
            } else
                for (int p = 0; 32 * p < m; p++) {
                    const int yrows = SPINE_MIN(32, m - 32 * p);
                    if (m - 32 * p > 16 && NG == 2)
                        PASS_BF(2, 2);
                    else if (m - 32 * p > 16)
                        PASS_BF(2, 1);
                    else if (NG == 2)
                        PASS_BF(1, 2);
                    else
                        PASS_BF(1, 1);
                }
            r += 16 * NG;
        }
        _tile_release();
        return;
    }
    const float *base = w->data;
    int slot = 0, pre = 0; /* ring: the current chunk's slot; the span's first chunk split */
    for (int r = r0; r < r0 + nr;) {
        const int NG = SPINE_MIN(maxg, (r0 + nr - r) / 16), rn = r + 16 * NG;
        if (NG == 0) break;
        const int ngn = SPINE_MIN(maxg, (r0 + nr - rn) / 16); /* the next span's groups */
        const float *g[2] = {base + (size_t)r * k, base + (size_t)(r + 16 * (NG - 1)) * k};
        const float *nx[2] = {base + (size_t)rn * k,
                              base + (size_t)(rn + 16 * SPINE_MAX(ngn - 1, 0)) * k};
        /* chained: the ring's next span, when it has as many groups */
        const float *const *nextg = ring && ngn == NG ? nx : NULL;
        if (!pre) split_first(NG, g, k, wb + (size_t)(ring ? slot : 0) * 3072);
        if (tall) {
            const int p = 0, yrows = m;
            if (mtiles == 3)
                PASS(3, 1, 1);
            else
                PASS(4, 1, 1);
        } else
            for (int p = 0; 32 * p < m; p++) {
                const int MT = m - 32 * p > 16 ? 2 : 1, yrows = SPINE_MIN(32, m - 32 * p);
                const int split = p == 0;
                if (MT == 2 && NG == 2) {
                    if (split)
                        PASS(2, 2, 1);
                    else
                        PASS(2, 2, 0);
                } else if (MT == 2) {
                    if (split)
                        PASS(2, 1, 1);
                    else
                        PASS(2, 1, 0);
                } else if (NG == 2) {
                    if (split)
                        PASS(1, 2, 1);
                    else
                        PASS(1, 2, 0);
                } else {
                    if (split)
                        PASS(1, 1, 1);
                    else
                        PASS(1, 1, 0);
                }
            }
        pre = nextg != NULL;
        slot = (slot + nch) & 1;
        r = rn;
    }
    _tile_release();
}
