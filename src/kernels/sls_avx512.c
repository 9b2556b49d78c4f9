/* sls_avx512.c: SparseLengthsSum kernels for AVX-512 (F, BW, VL) with FMA and F16C, one per
 * row type.
 *
 * The AVX2 kernels' plan (sls_avx2.c) with zmm registers: a bag accumulates in up to eight
 * registers of 16 floats (128 values), so dim 128 is one pass over the rows instead of two;
 * wider rows go in blocks of 128. A dim that is not a multiple of 16 ends in one masked
 * vector (masked loads never touch the bytes they leave out) instead of a scalar tail. The
 * sums are formed in the same order, one fused multiply-add per value and row, so results are
 * bitwise those of the AVX2 and scalar kernels. Prefetch, the hot ring and the multi-table
 * run-on come from sls_common.h. This file is compiled with -mavx512f -mavx512bw -mavx512vl
 * and entered only after a CPU check. */
#include "sls_common.h"

#include <immintrin.h>

#define INLINE SLS_INLINE

/* 16 values from element 16*k (n < 16: only the first n; the others read as 0) */
INLINE __m512 ld16(const int rt, const uint8_t *row, int k, int n) {
    const __mmask16 m = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
    switch (rt) {
    case SPINE_ROW_F32:
        if (n >= 16) return _mm512_loadu_ps((const float *)(const void *)row + 16 * k);
        return _mm512_maskz_loadu_ps(m, (const float *)(const void *)row + 16 * k);
    case SPINE_ROW_F16:
        if (n >= 16)
            return _mm512_cvtph_ps(
                _mm256_loadu_si256((const __m256i *)(const void *)(row + 32 * k)));
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row + 32 * k));
    case SPINE_ROW_INT8: {
        __m128i q = n >= 16 ? _mm_loadu_si128((const __m128i *)(const void *)(row + 16 * k))
                            : _mm_maskz_loadu_epi8(m, row + 16 * k);
        return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(q));
    }
    default: { /* INT4: eight bytes hold 16 nibbles, low nibble first */
        const __mmask16 bm = (__mmask16)((1u << ((SPINE_MIN(n, 16) + 1) / 2)) - 1);
        __m128i x = _mm_maskz_loadu_epi8(bm, row + 8 * k);
        __m128i lo = _mm_and_si128(x, _mm_set1_epi8(0x0f));
        __m128i hi = _mm_and_si128(_mm_srli_epi16(x, 4), _mm_set1_epi8(0x0f));
        return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi)));
    }
    }
}

/* acc[0..3] += w * (values 0 .. 63) of a block of 64 INT4 values (32 bytes at p): one load and
 * one nibble split for all of them. Unpacking low and high nibbles interleaves them back into
 * order within each 128-bit lane: a = values 0-15 | 32-47, c = 16-31 | 48-63. */
INLINE void fma_int4_64(const uint8_t *p, __m512 wv, __m512 *acc) {
    const __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)p);
    const __m256i m = _mm256_set1_epi8(0x0f);
    const __m256i lo = _mm256_and_si256(x, m), hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), m);
    const __m256i a = _mm256_unpacklo_epi8(lo, hi), c = _mm256_unpackhi_epi8(lo, hi);
    const __m128i q[4] = {_mm256_castsi256_si128(a), _mm256_castsi256_si128(c),
                          _mm256_extracti128_si256(a, 1), _mm256_extracti128_si256(c, 1)};
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
        acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(q[i])), wv, acc[i]);
}

/* Accumulate elements [c0, c0 + 16*NV + tail) of one bag; c0 is a multiple of 128 (8
 * vectors), tail < 16 values go in one masked vector. ring, FIXED: as in sls_avx2.c (rows
 * resolved ahead for hot tables; the dim as a compile-time constant for bags without
 * weights). */
INLINE void bag_block(const int rt, const int NV, const bool HOT, const int FIXED, const bool L2,
                      const int64_t dist, const sls_table *t, const spine_bags *b, int64_t s,
                      int64_t e, int c0, int tail, bool prefetch, int64_t pend, const sls_next *nx,
                      hot_ring *ring, float *out) {
    const bool quant = rt == SPINE_ROW_INT8 || rt == SPINE_ROW_INT4;
    const size_t rb = FIXED ? sls_row_bytes((spine_rowtype)rt, FIXED) : t->row_bytes;
    const int k0 = c0 / 16;
    __m512 acc[9];
#pragma GCC unroll 9
    for (int k = 0; k <= NV; k++) acc[k] = _mm512_setzero_ps();
    float bsum = 0.0f;
    for (int64_t p = s; p < e; p++) {
        const uint8_t *row;
        if (HOT && ring)
            row = ring->a[(uint64_t)p % HOT_RING];
        else
            row = HOT ? sls_row(t, b->indices[p]) : t->data + (size_t)b->indices[p] * rb;
        if (prefetch) {
            if (p + dist < pend) {
                const uint8_t *q;
                if (HOT && ring) {
                    if (p + dist >= ring->end) hot_resolve(ring, t, b->indices, pend);
                    q = ring->a[(uint64_t)(p + dist) % HOT_RING];
                } else {
                    q = HOT ? sls_row(t, b->indices[p + dist])
                            : t->data + (size_t)b->indices[p + dist] * rb;
                }
                if (FIXED)
                    prefetch_row_fixed(q, rb, L2);
                else
                    prefetch_row(q, rb, L2);
            } else {
                prefetch_next(nx, p + dist - pend, L2);
            }
        }
        float w = !FIXED && b->weights ? b->weights[p] : 1.0f;
        if (quant) {
            float sc, bi;
            scale_bias(rt, row, FIXED ? FIXED : t->dim, &sc, &bi);
            bsum = __builtin_fmaf(w, bi, bsum);
            w *= sc;
        }
        const __m512 wv = _mm512_set1_ps(w);
        if (rt == SPINE_ROW_INT4 && NV % 4 == 0) {
#pragma GCC unroll 2
            for (int k = 0; k < NV; k += 4) fma_int4_64(row + (c0 + 16 * k) / 2, wv, acc + k);
        } else {
#pragma GCC unroll 8
            for (int k = 0; k < NV; k++)
                acc[k] = _mm512_fmadd_ps(ld16(rt, row, k0 + k, 16), wv, acc[k]);
        }
        if (tail) acc[NV] = _mm512_fmadd_ps(ld16(rt, row, k0 + NV, tail), wv, acc[NV]);
    }
    const __m512 bv = _mm512_set1_ps(bsum);
    const bool mean = b->pooling == SPINE_POOL_MEAN && e > s;
    const __m512 nv = _mm512_set1_ps((float)(e - s));
#pragma GCC unroll 9
    for (int k = 0; k < NV + (tail > 0); k++) {
        __m512 v = quant ? _mm512_add_ps(acc[k], bv) : acc[k];
        if (mean) v = _mm512_div_ps(v, nv);
        if (k < NV)
            _mm512_storeu_ps(out + c0 + 16 * k, v);
        else
            _mm512_mask_storeu_ps(out + c0 + 16 * k, (__mmask16)((1u << tail) - 1), v);
    }
}

/* Bags of dim 16, 32, 64 or 128 without weights: the row size a compile-time constant, and
 * the prefetch level (L2) one too. */
INLINE void sls_fixed(const int rt, const bool HOT, const bool L2, const int64_t dist,
                      const sls_table *t, const spine_bags *b, const sls_next *nx, hot_ring *ring) {
    const int dim = t->dim;
    const int64_t pend = b->offsets[b->nbags];
    /* the common shapes, each with its row size a constant and in one pass */
#define FIXED_DIM(D)                                                                               \
    for (int32_t bag = 0; bag < b->nbags; bag++)                                                   \
        bag_block(rt, (D) / 16, HOT, (D), L2, dist, t, b, b->offsets[bag], b->offsets[bag + 1], 0, \
                  0, true, pend, nx, ring, b->out + (size_t)bag * b->out_stride);
    if (dim == 64) {
        FIXED_DIM(64)
    } else if (dim == 32) {
        FIXED_DIM(32)
    } else if (dim == 16) {
        FIXED_DIM(16)
    } else {
        FIXED_DIM(128)
    }
#undef FIXED_DIM
}

SLS_ANY_DIM(16)

SLS_GENERIC_FROM_BODY

SLS_ENTRY_POINTS(avx512)
