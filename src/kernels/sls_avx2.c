/* sls_avx2.c: SparseLengthsSum kernels for AVX2 + FMA + F16C, one per row type.
 *
 * Per bag, the row is accumulated in up to eight ymm registers (64 floats); wider rows go in
 * blocks of 64. Rows are prefetched dist indices ahead across bag boundaries, every cache
 * line of the row (a row that straddles a line boundary costs one line more). Quantized rows
 * fold the weight into the scale and sum the biases apart: sum(w*(q*s+b)) = sum((w*s)*q) +
 * sum(w*b). Bags of dim 16, 32, 64 or 128 without weights run with the row size a compile-time
 * constant; hot tables resolve their rows ahead of the pooling loop (hot_ring). This file is
 * compiled with -mavx2 -mfma -mf16c and entered only after a CPU check. */
#include "sls_common.h"

#include <immintrin.h>

#define INLINE SLS_INLINE

/* Four independent accumulators of 4 indices: the OR of all indices (a negative one sets the
 * sign bit) and the OR of the comparisons with rows - 1. n a multiple of 16, rows > 0. */
bool sls_indices_in_range_avx2(const int64_t *idx, size_t n, int64_t rows) {
    const __m256i lim = _mm256_set1_epi64x(rows - 1);
    __m256i any[4], gt[4];
    for (int k = 0; k < 4; k++) any[k] = gt[k] = _mm256_setzero_si256();
    for (size_t i = 0; i < n; i += 16)
        for (int k = 0; k < 4; k++) {
            const __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)(idx + i + 4 * k));
            any[k] = _mm256_or_si256(any[k], x);
            gt[k] = _mm256_or_si256(gt[k], _mm256_cmpgt_epi64(x, lim));
        }
    __m256i a = _mm256_or_si256(_mm256_or_si256(any[0], any[1]), _mm256_or_si256(any[2], any[3]));
    __m256i g = _mm256_or_si256(_mm256_or_si256(gt[0], gt[1]), _mm256_or_si256(gt[2], gt[3]));
    return _mm256_movemask_pd(_mm256_castsi256_pd(_mm256_or_si256(a, g))) == 0;
}

/* Eight values at a time: compared as 32-bit integers (a limit of at least 2^31 leaves only
 * negative values out), widened by sign extension in two halves. n a multiple of 8, rows > 0. */
bool sls_widen_indices_avx2(const uint8_t *src, int64_t *dst, size_t n, int64_t rows) {
    const int32_t top = rows > INT32_MAX ? INT32_MAX : (int32_t)(rows - 1);
    const __m256i lim = _mm256_set1_epi32(top);
    __m256i any = _mm256_setzero_si256(), gt = _mm256_setzero_si256();
    for (size_t i = 0; i < n; i += 8) {
        const __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)(src + 4 * i));
        any = _mm256_or_si256(any, x);
        gt = _mm256_or_si256(gt, _mm256_cmpgt_epi32(x, lim));
        _mm256_storeu_si256((__m256i *)(void *)(dst + i),
                            _mm256_cvtepi32_epi64(_mm256_castsi256_si128(x)));
        _mm256_storeu_si256((__m256i *)(void *)(dst + i + 4),
                            _mm256_cvtepi32_epi64(_mm256_extracti128_si256(x, 1)));
    }
    return _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_or_si256(any, gt))) == 0;
}

/* eight values starting at element 8*k */
INLINE __m256 ld8(const int rt, const uint8_t *row, int k) {
    switch (rt) {
    case SPINE_ROW_F32:
        return _mm256_loadu_ps((const float *)(const void *)row + 8 * k);
    case SPINE_ROW_F16:
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(row + 16 * k)));
    case SPINE_ROW_INT8:
        return _mm256_cvtepi32_ps(
            _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(row + 8 * k))));
    default: { /* INT4: four bytes hold eight nibbles, low nibble first */
        int32_t v;
        memcpy(&v, row + 4 * k, 4);
        __m128i x = _mm_cvtsi32_si128(v);
        __m128i m = _mm_set1_epi8(0x0f);
        __m128i lo = _mm_and_si128(x, m), hi = _mm_and_si128(_mm_srli_epi16(x, 4), m);
        return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi)));
    }
    }
}

/* acc[k] += w * (values 8k .. 8k+7) for a whole block of 64 INT4 values (32 bytes at p): one
 * load and one split into nibbles for all of them, where ld8 would take eight of each. Byte j
 * holds values 2j (low nibble) and 2j+1; unpacking the low and high nibbles interleaves them
 * back into order within each 128-bit lane: a = values 0-15 | 32-47, c = 16-31 | 48-63. */
INLINE void fma_int4_64(const uint8_t *p, __m256 wv, __m256 *acc) {
    const __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)p);
    const __m256i m = _mm256_set1_epi8(0x0f);
    const __m256i lo = _mm256_and_si256(x, m), hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), m);
    const __m256i a = _mm256_unpacklo_epi8(lo, hi), c = _mm256_unpackhi_epi8(lo, hi);
    const __m128i q[4] = {_mm256_castsi256_si128(a), _mm256_castsi256_si128(c),
                          _mm256_extracti128_si256(a, 1), _mm256_extracti128_si256(c, 1)};
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        __m256 v0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q[i]));
        __m256 v1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(q[i], 8)));
        acc[2 * i] = _mm256_fmadd_ps(v0, wv, acc[2 * i]);
        acc[2 * i + 1] = _mm256_fmadd_ps(v1, wv, acc[2 * i + 1]);
    }
}

/* one value (tails) */
INLINE float ld1(const int rt, const uint8_t *row, int d) {
    switch (rt) {
    case SPINE_ROW_F32: {
        float f;
        memcpy(&f, row + 4 * (size_t)d, 4);
        return f;
    }
    case SPINE_ROW_F16: {
        uint16_t h;
        memcpy(&h, row + 2 * (size_t)d, 2);
        return _cvtsh_ss(h);
    }
    case SPINE_ROW_INT8:
        return (float)row[d];
    default:
        return (float)((row[d >> 1] >> ((d & 1) * 4)) & 15);
    }
}

/* Accumulate elements [c0, c0 + 8*NV + tail) of one bag. c0 is a multiple of 64 (8 vectors).
 * ring (hot tables, the first block of each bag): row addresses resolved ahead (hot_ring);
 * other blocks of a wide row resolve theirs again. FIXED: the dim, when the caller has made it
 * a compile-time constant (rows of one block, no weights), so the row size is one too; else 0. */
INLINE void bag_block(const int rt, const int NV, const bool HOT, const int FIXED, const bool L2,
                      const int64_t dist, const sls_table *t, const spine_bags *b, int64_t s,
                      int64_t e, int c0, int tail, bool prefetch, int64_t pend, const sls_next *nx,
                      hot_ring *ring, float *out) {
    const bool quant = rt == SPINE_ROW_INT8 || rt == SPINE_ROW_INT4;
    const size_t rb = FIXED ? sls_row_bytes((spine_rowtype)rt, FIXED) : t->row_bytes;
    const int k0 = c0 / 8;
    __m256 acc[8];
#pragma GCC unroll 8
    for (int k = 0; k < NV; k++) acc[k] = _mm256_setzero_ps();
    float tacc[8] = {0};
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
        __m256 wv = _mm256_set1_ps(w);
        if (rt == SPINE_ROW_INT4 && NV == 8)
            fma_int4_64(row + c0 / 2, wv, acc);
        else
#pragma GCC unroll 8
            for (int k = 0; k < NV; k++) acc[k] = _mm256_fmadd_ps(ld8(rt, row, k0 + k), wv, acc[k]);
        for (int j = 0; j < tail; j++)
            tacc[j] = __builtin_fmaf(ld1(rt, row, c0 + 8 * NV + j), w, tacc[j]);
    }
    __m256 bv = _mm256_set1_ps(bsum);
    const bool mean = b->pooling == SPINE_POOL_MEAN && e > s;
    __m256 nv = _mm256_set1_ps((float)(e - s));
#pragma GCC unroll 8
    for (int k = 0; k < NV; k++) {
        __m256 v = quant ? _mm256_add_ps(acc[k], bv) : acc[k];
        if (mean) v = _mm256_div_ps(v, nv);
        _mm256_storeu_ps(out + c0 + 8 * k, v);
    }
    for (int j = 0; j < tail; j++) {
        float v = quant ? tacc[j] + bsum : tacc[j];
        if (mean) v /= (float)(e - s);
        out[c0 + 8 * NV + j] = v;
    }
}

/* Bags of dim 16, 32, 64 or 128 without weights: the row size a compile-time constant, and
 * the prefetch level (L2) one too. */
INLINE void sls_fixed(const int rt, const bool HOT, const bool L2, const int64_t dist,
                      const sls_table *t, const spine_bags *b, const sls_next *nx, hot_ring *ring) {
    const int dim = t->dim;
    const int64_t pend = b->offsets[b->nbags];
    /* the common shapes, each with its row size a constant; 128 in two blocks of 64, the
     * second reading rows the first brought into cache */
#define FIXED_DIM(D)                                                                               \
    for (int32_t bag = 0; bag < b->nbags; bag++) {                                                 \
        float *out = b->out + (size_t)bag * b->out_stride;                                         \
        const int64_t s = b->offsets[bag], e = b->offsets[bag + 1];                                \
        bag_block(rt, (D) >= 64 ? 8 : (D) / 8, HOT, (D), L2, dist, t, b, s, e, 0, 0, true, pend,   \
                  nx, ring, out);                                                                  \
        if ((D) == 128)                                                                            \
            bag_block(rt, 8, HOT, (D), L2, dist, t, b, s, e, 64, 0, false, pend, nx, NULL, out);   \
    }
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

SLS_ANY_DIM(8)

SLS_GENERIC_FROM_BODY

SLS_ENTRY_POINTS(avx2)
