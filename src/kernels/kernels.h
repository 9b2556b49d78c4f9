/* kernels.h: compute kernels: pooled embedding lookups (SparseLengthsSum) for every row type,
 * with a portable scalar reference and AVX2/FMA/F16C versions picked at run time; the dense
 * side (GEMM through BLAS, bias+activation, the dot interaction, sigmoid).
 * Kernels never allocate and never fail: inputs are validated before they get here. */
#ifndef SPINE_KERNELS_H
#define SPINE_KERNELS_H

#include "../base/base.h"

#include <stdatomic.h>

/* Bytes of one row of dim values (spine_row_bytes); inline, so that kernels with a
 * compile-time dim get a constant. */
static inline size_t sls_row_bytes(spine_rowtype t, int dim) {
    if (dim <= 0) return 0;
    switch (t) {
    case SPINE_ROW_F32:
        return (size_t)dim * 4;
    case SPINE_ROW_F16:
        return (size_t)dim * 2;
    case SPINE_ROW_INT8:
        return (size_t)dim + 8; /* values, then fp32 scale and bias */
    case SPINE_ROW_INT4:
        return ((size_t)dim + 1) / 2 + 4; /* two values a byte, then fp16 scale and bias */
    }
    return 0;
}

/* One word of a hot tier's index: the hot bits of 64 consecutive rows, and how many hot rows
 * come before them. Both in one 16-byte entry, so resolving an index reads one cache line. */
typedef struct sls_hot_word {
    uint64_t bits;
    uint64_t rank;
} sls_hot_word;

/* A table as kernels see it: rows of row_bytes bytes, each decoding to dim floats. An optional
 * hot tier holds copies of some rows in a compact table: row i is hot when bit i % 64 of
 * hot_index[i / 64].bits is set, and then lives at hot_data + (hot_index[i / 64].rank + hot rows
 * before it in its word) * row_bytes. The index takes 2 bits per row and stays cache-resident. */
typedef struct sls_table {
    const uint8_t *data;
    int64_t rows;
    size_t row_bytes;
    int dim;
    spine_rowtype rowtype;
    const sls_hot_word *hot_index; /* NULL: no hot tier */
    const uint8_t *hot_data;
    atomic_uint_fast64_t *hot_hits; /* with a hot tier: rows served from it are added here */
} sls_table;

/* Whether a row address (from sls_row) lies in the hot copy rather than the table. */
static inline bool sls_is_hot(const sls_table *t, const uint8_t *row) {
    return (size_t)(row - t->data) >= (size_t)t->rows * t->row_bytes;
}

/* Where row idx is read from (the hot copy when there is one). Without a branch on whether the
 * row is hot: that depends on a load, and under skewed traffic it is a coin toss the predictor
 * loses often, each miss stalling until the load returns. Integer arithmetic, so the address
 * not chosen is never formed as a pointer. */
static inline const uint8_t *sls_row(const sls_table *t, int64_t idx) {
    const uintptr_t cold = (uintptr_t)t->data + (uintptr_t)idx * t->row_bytes;
    if (!t->hot_index) return (const uint8_t *)cold;
    const sls_hot_word h = t->hot_index[idx >> 6];
    const unsigned sh = (unsigned)(idx & 63);
    const uint64_t hot = (h.bits >> sh) & 1, below = h.bits & ((1ull << sh) - 1);
    const uintptr_t warm =
        (uintptr_t)t->hot_data +
        (uintptr_t)(h.rank + (uint64_t)__builtin_popcountll(below)) * t->row_bytes;
    const uintptr_t pick = (uintptr_t)0 - (uintptr_t)hot; /* all ones when hot */
    return (const uint8_t *)((warm & pick) | (cold & ~pick));
}

/* How far ahead and into which cache the lookup kernels prefetch rows. Read once: from
 * SPINE_SLS_PREFETCH=t0:D or t1:D (D rows ahead, 1..SLS_PF_MAX; t0 into L1, t1 into L2), else
 * the default for the CPU: t1:32 on Intel (16 fill buffers per core: prefetches into L1 ran out
 * of them, 50 against 67 M f32 rows/s on a Xeon with AVX-512), t0:16 elsewhere (tuned on AMD
 * EPYC). */
#define SLS_PF_MAX 128
typedef struct sls_prefetch {
    int dist;
    bool l2;
} sls_prefetch;
const sls_prefetch *sls_prefetch_get(void);
/* Parses "t0:16" / "t1:32"; -1 when malformed or out of range. */
int sls_prefetch_parse(const char *s, sls_prefetch *out);

/* Pool bags (see spine_bags). The caller has checked every index and offset
 * (spine_store_lookup does, for every store), so kernels neither branch on them nor fail. */
typedef void (*sls_fn)(const sls_table *t, const spine_bags *b);

typedef enum sls_isa { SLS_ISA_SCALAR = 0, SLS_ISA_AVX2 = 1, SLS_ISA_AVX512 = 2 } sls_isa;

/* The best ISA this CPU runs (AVX-512 means F, BW and VL; each level includes the ones below),
 * capped by the environment variable SPINE_ISA=scalar|avx2|avx512 when set: every kernel family
 * (lookups, weight products, the probes) picks its path from this. */
sls_isa sls_best_isa(void);
/* Whether this CPU runs an ISA's kernels (regardless of SPINE_ISA). */
bool sls_isa_runs(sls_isa isa);
const char *sls_isa_name(sls_isa isa);
int sls_isa_parse(const char *s, sls_isa *out);
/* The kernel for a row type on an ISA (NULL when that ISA is not compiled in or the CPU lacks
 * it); `hot`: the variant that reads hot-tier rows (plain tables use the one without the
 * per-row check, which cost them 5-10% when it was shared). */
sls_fn sls_kernel(spine_rowtype rt, sls_isa isa, bool hot);
/* n tables' bags in one call, with the fastest kernels this CPU runs: on AVX2 the prefetch
 * runs on from each table into the next (FBGEMM's multi-table kernel); results are exactly
 * those of n single-table calls. `isa` as for sls_kernel. */
void sls_multi(const sls_table *t, const spine_bags *b, int n, sls_isa isa);

/* Whether a row of `bytes` at address p has its last byte prefetched on its own, after one
 * prefetch per 64 bytes from p (see prefetch_row_fixed): always when some rows of a 64-byte
 * aligned table straddle one line more (r >= g below), else only when this row does. */
static inline bool sls_asks_last_byte(uintptr_t p, size_t bytes) {
    const size_t r = (bytes - 1) & 63, g = SPINE_MIN(bytes & (~bytes + 1), (size_t)64);
    return r >= g || (p & 63) + r >= 64;
}

/* Whether every one of n indices lies in [0, rows): the bounds check of every lookup
 * (spine_store_lookup), one pass over the indices, vectorized on `isa` (scalar otherwise). */
bool sls_indices_in_range(const int64_t *idx, size_t n, int64_t rows, sls_isa isa);
bool sls_indices_in_range_avx2(const int64_t *idx, size_t n, int64_t rows); /* n % 16 == 0 */
/* dst[i] = src[i] for n little-endian INT32 at src (any alignment), and whether every value
 * lies in [0, rows): a server's widening of wire indices, checked in the same pass. On false
 * dst is still written in full, so the caller can name the bad one. */
bool sls_widen_indices(const uint8_t *src, int64_t *dst, size_t n, int64_t rows, sls_isa isa);
bool sls_widen_indices_avx2(const uint8_t *src, int64_t *dst, size_t n,
                            int64_t rows); /* n % 8 == 0 */

/* Row decoding (scalar), the reference every kernel is tested against. */
void sls_decode_row(const sls_table *t, int64_t row, float *out);

/* Quantization of a float row into a row type (for generators and tests). */
void sls_encode_row(spine_rowtype rt, const float *in, int dim, uint8_t *out);

/* AVX2 entry points (sls_avx2.c); only called when the CPU supports them. */
void sls_f32_avx2(const sls_table *t, const spine_bags *b);
void sls_f16_avx2(const sls_table *t, const spine_bags *b);
void sls_int8_avx2(const sls_table *t, const spine_bags *b);
void sls_int4_avx2(const sls_table *t, const spine_bags *b);
void sls_f32_hot_avx2(const sls_table *t, const spine_bags *b);
void sls_f16_hot_avx2(const sls_table *t, const spine_bags *b);
void sls_int8_hot_avx2(const sls_table *t, const spine_bags *b);
void sls_int4_hot_avx2(const sls_table *t, const spine_bags *b);
void sls_multi_avx2(const sls_table *t, const spine_bags *b, int n);
/* AVX-512 entry points (sls_avx512.c); results bitwise those of the AVX2 ones. */
void sls_f32_avx512(const sls_table *t, const spine_bags *b);
void sls_f16_avx512(const sls_table *t, const spine_bags *b);
void sls_int8_avx512(const sls_table *t, const spine_bags *b);
void sls_int4_avx512(const sls_table *t, const spine_bags *b);
void sls_f32_hot_avx512(const sls_table *t, const spine_bags *b);
void sls_f16_hot_avx512(const sls_table *t, const spine_bags *b);
void sls_int8_hot_avx512(const sls_table *t, const spine_bags *b);
void sls_int4_hot_avx512(const sls_table *t, const spine_bags *b);
void sls_multi_avx512(const sls_table *t, const spine_bags *b, int n);

/* ---- dense ---- */
/* y[m, n] (row stride ldy) = act(x[m, k] (stride ldx) . w[n, k]^T + bias[n]). */
typedef enum act_kind { ACT_NONE, ACT_RELU } act_kind;
void dense_linear(int m, int n, int k, const float *x, int ldx, const float *w, const float *bias,
                  float *y, int ldy, act_kind act);
/* Pairwise dot products of nf feature vectors of width d (stored at stride d): the lower
 * triangle (i > j, or i >= j with self) in row order, as facebookresearch/dlrm flattens it. */
void dense_dot_interact(const float *feat, int nf, int d, bool self, float *out);
float dense_sigmoid(float x);
/* Make sure BLAS runs single-threaded inside spine's own pool. */
void dense_init(void);

#endif
