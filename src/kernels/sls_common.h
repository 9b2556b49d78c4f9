/* sls_common.h: the parts of the SIMD lookup kernels that do not depend on the vector width,
 * shared by sls_avx2.c and sls_avx512.c: row prefetch, the run-on into the next table of a
 * multi-table call, the hot tier's ring of rows resolved ahead, and the entry points (one per
 * row type, plain and hot, and the multi-table call) around a file's sls_generic. Everything
 * here is static inline, compiled into each ISA's file with that file's flags. */
#ifndef SPINE_SLS_COMMON_H
#define SPINE_SLS_COMMON_H

#include "kernels.h"

#include <immintrin.h>

#define SLS_INLINE static inline __attribute__((always_inline))

/* One line, into L1 (prefetcht0) or, with L2 (a compile-time constant), into L2 (prefetcht1). */
SLS_INLINE void prefetch_line(const void *p, const bool L2) {
    if (L2)
        __builtin_prefetch(p, 0, 2);
    else
        __builtin_prefetch(p, 0, 3);
}

/* Every line of a row of `bytes` at p. */
SLS_INLINE void prefetch_row(const uint8_t *p, size_t bytes, const bool L2) {
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)63, e = ((uintptr_t)p + bytes - 1) & ~(uintptr_t)63;
    for (; a <= e; a += 64) prefetch_line((const void *)a, L2);
}

/* Every line of a row of a compile-time size: at each 64 bytes from its start, and its last
 * byte when the row straddles one line more than its size needs (a row at offset a within its
 * line, of size 64(L-1) + r + 1, does when a + r >= 64). Unrolled, where prefetch_row's loop
 * cost ~14 instructions a row. In a table whose base is 64-byte aligned, rows start at
 * multiples of g = gcd(size, 64): when r < g no row straddles (256-byte f32 and 72-byte int8
 * rows), and the test, taken the same way for every row, replaces a prefetch that asked again
 * for a line already asked for (it cost the f32 kernel 3-20% of its rows/s on one thread, 7
 * alternating rounds). When some rows do straddle (36-byte int4 rows), the offsets of random rows
 * would make the test a coin toss: the last byte is asked for every time instead. */
SLS_INLINE void prefetch_row_fixed(const uint8_t *p, const size_t bytes, const bool L2) {
#pragma GCC unroll 8
    for (size_t o = 0; o < bytes; o += 64) prefetch_line(p + o, L2);
    if (sls_asks_last_byte((uintptr_t)p, bytes)) prefetch_line(p + bytes - 1, L2);
}

/* Scale and bias of a quantized row (F16C for INT4's halves). */
SLS_INLINE void scale_bias(const int rt, const uint8_t *row, int dim, float *s, float *b) {
    if (rt == SPINE_ROW_INT8) {
        memcpy(s, row + dim, 4);
        memcpy(b, row + dim + 4, 4);
    } else {
        uint16_t hs, hb;
        size_t nb = ((size_t)dim + 1) / 2;
        memcpy(&hs, row + nb, 2);
        memcpy(&hb, row + nb + 2, 2);
        *s = _cvtsh_ss(hs);
        *b = _cvtsh_ss(hb);
    }
}

/* The lookups the prefetch runs on into after this table's last one: the next table of a
 * multi-table call (NULL: none). */
typedef struct sls_next {
    const sls_table *t;
    const spine_bags *b;
} sls_next;

SLS_INLINE void prefetch_next(const sls_next *nx, int64_t k, const bool L2) {
    if (!nx) return;
    const int64_t p = nx->b->offsets[0] + k;
    if (p < nx->b->offsets[nx->b->nbags])
        prefetch_row(sls_row(nx->t, nx->b->indices[p]), nx->t->row_bytes, L2);
}

/* Row addresses of a hot table, resolved ahead in runs of HOT_RUN positions by a loop that
 * does nothing else, so the index reads of many rows overlap and the pooling loop stays as
 * lean as a plain table's (each instruction it gains costs rows/s: resolving rows between the
 * FMAs of others made the hot kernel 0.6-0.7x the plain one, however few rows were hot). The
 * address of position p sits at a[p % HOT_RING] from its resolution until its read. */
#define HOT_RUN 256
#define HOT_RING                                                                                   \
    512 /* > HOT_RUN + the distance: a run never overwrites an address still to be                 \
           read (sls_prefetch_get caps the distance at SLS_PF_MAX) */
typedef struct hot_ring {
    const uint8_t *a[HOT_RING];
    int64_t end;   /* positions before this are resolved */
    uint64_t hits; /* of those, rows found in the hot copy */
} hot_ring;

static inline void hot_resolve(hot_ring *r, const sls_table *t, const int64_t *idx, int64_t pend) {
    const int64_t q = r->end, e = SPINE_MIN(pend, q + HOT_RUN);
    uint64_t hits = 0;
    for (int64_t k = q; k < e; k++) {
        if (k + 8 < e) __builtin_prefetch(&t->hot_index[idx[k + 8] >> 6], 0, 3);
        const uint8_t *row = sls_row(t, idx[k]);
        hits += sls_is_hot(t, row);
        r->a[(uint64_t)k % HOT_RING] = row;
    }
    r->hits += hits;
    r->end = e;
}

/* sls_any(rt, HOT, l2, dist, t, b, nx, ring) of a file whose vectors hold LANES floats, around
 * its bag_block: any dim, or weighted bags, in blocks of 8 vectors (8 * LANES values), the last
 * block with NV full vectors and a tail. The prefetch level is a run-time value here, so these
 * loops are instantiated once rather than once per level. */
#define SLS_ANY_DIM(LANES)                                                                         \
    SLS_INLINE void sls_any(const int rt, const bool HOT, const bool l2, const int64_t dist,       \
                            const sls_table *t, const spine_bags *b, const sls_next *nx,           \
                            hot_ring *ring) {                                                      \
        const int dim = t->dim, blk = 8 * (LANES);                                                 \
        const int64_t pend = b->offsets[b->nbags];                                                 \
        for (int32_t bag = 0; bag < b->nbags; bag++) {                                             \
            int64_t s = b->offsets[bag], e = b->offsets[bag + 1];                                  \
            float *out = b->out + (size_t)bag * b->out_stride;                                     \
            for (int c0 = 0; c0 < dim; c0 += blk) {                                                \
                int left = dim - c0;                                                               \
                int nv = left >= blk ? 8 : left / (LANES);                                         \
                int tail = left >= blk ? 0 : left % (LANES);                                       \
                bool first = c0 == 0;                                                              \
                hot_ring *r = HOT && first ? ring : NULL;                                          \
                switch (nv) {                                                                      \
                case 0:                                                                            \
                    bag_block(rt, 0, HOT, 0, l2, dist, t, b, s, e, c0, tail, first, pend, nx, r,   \
                              out);                                                                \
                    break;                                                                         \
                case 1:                                                                            \
                    bag_block(rt, 1, HOT, 0, l2, dist, t, b, s, e, c0, tail, first, pend, nx, r,   \
                              out);                                                                \
                    break;                                                                         \
                case 2:                                                                            \
                    bag_block(rt, 2, HOT, 0, l2, dist, t, b, s, e, c0, tail, first, pend, nx, r,   \
                              out);                                                                \
                    break;                                                                         \
                case 3:                                                                            \
                    bag_block(rt, 3, HOT, 0, l2, dist, t, b, s, e, c0, tail, first, pend, nx, r,   \
                              out);                                                                \
                    break;                                                                         \
                case 4:                                                                            \
                    bag_block(rt, 4, HOT, 0, l2, dist, t, b, s, e, c0, tail, first, pend, nx, r,   \
                              out);                                                                \
                    break;                                                                         \
                case 5:                                                                            \
                    bag_block(rt, 5, HOT, 0, l2, dist, t, b, s, e, c0, tail, first, pend, nx, r,   \
                              out);                                                                \
                    break;                                                                         \
                case 6:                                                                            \
                    bag_block(rt, 6, HOT, 0, l2, dist, t, b, s, e, c0, tail, first, pend, nx, r,   \
                              out);                                                                \
                    break;                                                                         \
                case 7:                                                                            \
                    bag_block(rt, 7, HOT, 0, l2, dist, t, b, s, e, c0, tail, first, pend, nx, r,   \
                              out);                                                                \
                    break;                                                                         \
                default:                                                                           \
                    bag_block(rt, 8, HOT, 0, l2, dist, t, b, s, e, c0, tail, first, pend, nx, r,   \
                              out);                                                                \
                    break;                                                                         \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

/* sls_generic(rt, HOT, t, b, nx) of a file, from its sls_fixed (dims 16/32/64/128 without
 * weights, the prefetch level a compile-time constant: two copies) and sls_any (the rest, the
 * level a run-time value). The prefetch distance is a run-time value in both. */
#define SLS_GENERIC_FROM_BODY                                                                      \
    SLS_INLINE void sls_generic(const int rt, const bool HOT, const sls_table *t,                  \
                                const spine_bags *b, const sls_next *nx) {                         \
        const sls_prefetch *pf = sls_prefetch_get();                                               \
        const int dim = t->dim;                                                                    \
        hot_ring ring;                                                                             \
        ring.end = b->offsets[0];                                                                  \
        ring.hits = 0;                                                                             \
        if (HOT) hot_resolve(&ring, t, b->indices, b->offsets[b->nbags]);                          \
        if ((dim == 16 || dim == 32 || dim == 64 || dim == 128) && !b->weights) {                  \
            if (pf->l2)                                                                            \
                sls_fixed(rt, HOT, true, pf->dist, t, b, nx, HOT ? &ring : NULL);                  \
            else                                                                                   \
                sls_fixed(rt, HOT, false, pf->dist, t, b, nx, HOT ? &ring : NULL);                 \
        } else {                                                                                   \
            sls_any(rt, HOT, pf->l2, pf->dist, t, b, nx, &ring);                                   \
        }                                                                                          \
        if (HOT && ring.hits && t->hot_hits)                                                       \
            atomic_fetch_add_explicit(t->hot_hits, ring.hits, memory_order_relaxed);               \
    }

/* The entry points of one ISA (sls_f32_SUF ... sls_int4_hot_SUF, sls_multi_SUF) around that
 * file's sls_generic(rt, hot, table, bags, next). The multi-table call is FBGEMM's: the tables
 * of a batch in one call, the prefetch running on from the end of one table into the start of
 * the next, so no table after the first starts cold. */
#define SLS_ENTRY_POINTS(SUF)                                                                      \
    void sls_f32_##SUF(const sls_table *t, const spine_bags *b) {                                  \
        sls_generic(SPINE_ROW_F32, false, t, b, NULL);                                             \
    }                                                                                              \
    void sls_f32_hot_##SUF(const sls_table *t, const spine_bags *b) {                              \
        sls_generic(SPINE_ROW_F32, true, t, b, NULL);                                              \
    }                                                                                              \
    void sls_f16_##SUF(const sls_table *t, const spine_bags *b) {                                  \
        sls_generic(SPINE_ROW_F16, false, t, b, NULL);                                             \
    }                                                                                              \
    void sls_f16_hot_##SUF(const sls_table *t, const spine_bags *b) {                              \
        sls_generic(SPINE_ROW_F16, true, t, b, NULL);                                              \
    }                                                                                              \
    void sls_int8_##SUF(const sls_table *t, const spine_bags *b) {                                 \
        sls_generic(SPINE_ROW_INT8, false, t, b, NULL);                                            \
    }                                                                                              \
    void sls_int8_hot_##SUF(const sls_table *t, const spine_bags *b) {                             \
        sls_generic(SPINE_ROW_INT8, true, t, b, NULL);                                             \
    }                                                                                              \
    void sls_int4_##SUF(const sls_table *t, const spine_bags *b) {                                 \
        sls_generic(SPINE_ROW_INT4, false, t, b, NULL);                                            \
    }                                                                                              \
    void sls_int4_hot_##SUF(const sls_table *t, const spine_bags *b) {                             \
        sls_generic(SPINE_ROW_INT4, true, t, b, NULL);                                             \
    }                                                                                              \
    void sls_multi_##SUF(const sls_table *t, const spine_bags *b, int n) {                         \
        for (int i = 0; i < n; i++) {                                                              \
            if (b[i].nbags <= 0) continue;                                                         \
            sls_next nx = {NULL, NULL};                                                            \
            for (int j = i + 1; j < n && !nx.t; j++)                                               \
                if (b[j].nbags > 0) nx = (sls_next){&t[j], &b[j]};                                 \
            const sls_next *np = nx.t ? &nx : NULL;                                                \
            const bool hot = t[i].hot_index != NULL;                                               \
            switch (t[i].rowtype) {                                                                \
            case SPINE_ROW_F32:                                                                    \
                hot ? sls_generic(SPINE_ROW_F32, true, &t[i], &b[i], np)                           \
                    : sls_generic(SPINE_ROW_F32, false, &t[i], &b[i], np);                         \
                break;                                                                             \
            case SPINE_ROW_F16:                                                                    \
                hot ? sls_generic(SPINE_ROW_F16, true, &t[i], &b[i], np)                           \
                    : sls_generic(SPINE_ROW_F16, false, &t[i], &b[i], np);                         \
                break;                                                                             \
            case SPINE_ROW_INT8:                                                                   \
                hot ? sls_generic(SPINE_ROW_INT8, true, &t[i], &b[i], np)                          \
                    : sls_generic(SPINE_ROW_INT8, false, &t[i], &b[i], np);                        \
                break;                                                                             \
            case SPINE_ROW_INT4:                                                                   \
                hot ? sls_generic(SPINE_ROW_INT4, true, &t[i], &b[i], np)                          \
                    : sls_generic(SPINE_ROW_INT4, false, &t[i], &b[i], np);                        \
                break;                                                                             \
            }                                                                                      \
        }                                                                                          \
    }

#endif
