/* matmul.h: weight products for transformer layers: y = x . W^T with W stored row-major [n, k]
 * in F32 or BF16 (as checkpoints store nn.Linear weights), run as a list of jobs spread over
 * spine's pool in one parallel region. Small m (decode) streams W once through a register-
 * blocked kernel, larger m through register tiles (F32 and BF16 weights read in place), both
 * summing in one order: on AVX-512, weights re-laid in panels at load (mm_pack) and products
 * in the scalar reference's order; on AVX2, row-major dot products in 8 lanes. Without AVX2,
 * larger m goes through BLAS sgemm on row blocks of W (BF16 blocks widened to F32 in per-thread
 * scratch first). A job may
 * carry a second weight for SwiGLU: y = silu(x . W1^T) * (x . W3^T), fused so the product never
 * leaves the task. Where the CPU has AMX (matmul_amx.c), panels with more than 8 input rows go
 * to the tile unit instead, inputs (and F32 weights) split in three BF16 parts: within F32
 * rounding of the AVX-512 kernels, not bitwise (SPINE_AMX=0 keeps every product bitwise the
 * scalar reference's, whatever m). */
#ifndef SPINE_MATMUL_H
#define SPINE_MATMUL_H

#include "../base/safetensors.h"
#include "../base/pool.h"

typedef struct mm_weight {
    const void *data; /* [n, k] row-major, or in panels (below) */
    spine_dtype dt;   /* SPINE_DT_F32 or SPINE_DT_BF16 */
    int n, k;
    /* Panels: rows in groups of 16 (the last group h = n mod 16 rows when short), each group
     * column-major: W[16g + q, c] at 16g * k + c * h + q; BF16 by column pairs, W[16g + q, c]
     * at 16g * k + (c & ~1) * h + 2q + (c & 1) (an odd k's last column alone, as F32). The
     * same bytes, permuted within each group, so that one vector load holds one column (F32)
     * or one column pair (BF16: even and odd are a shift and a mask apart) of 16 rows: the
     * AVX-512 kernels broadcast each input element against it and keep one running sum per
     * output. */
    bool packed;
} mm_weight;

/* Whether the kernels that run here want panels (mm_pack): AVX-512 does. */
bool mm_wants_panels(void);
/* Re-lay w's bytes (writable memory) as panels, in place; a short temporary buffer. */
spine_status mm_pack(mm_weight *w, spine_error *err);
/* the element index of W[r, c] in w's layout */
static inline size_t mm_index(const mm_weight *w, int r, int c) {
    if (!w->packed) return (size_t)r * (size_t)w->k + (size_t)c;
    int g0 = r & ~15, h = w->n - g0 < 16 ? w->n - g0 : 16;
    size_t base = (size_t)g0 * (size_t)w->k, q = (size_t)(r - g0);
    if (w->dt == SPINE_DT_BF16 && c < (w->k & ~1))
        return base + (size_t)(c & ~1) * (size_t)h + 2 * q + (size_t)(c & 1);
    return base + (size_t)c * (size_t)h + q;
}

typedef struct mm_job {
    const float *x; /* [m, k], row stride ldx */
    int m, ldx;
    mm_weight w;
    float *y; /* [m, n], row stride ldy */
    int ldy;
    /* SwiGLU: when w3.data is set, y = silu(x.W^T) * (x.W3^T); y3 [m, n] (stride ldy) is
     * scratch for the second product */
    mm_weight w3;
    float *y3;
} mm_job;

/* rows of W handled by one BF16 widening block (BLAS path); input rows per chunk of the AVX2
 * tiles (BF16 inputs are re-laid a chunk at a time); columns of one AVX-512 panel block (32
 * weight rows transposed); the scratch a thread needs for all of it */
#define MM_BF16_BLOCK 64
#define MM_TILE_ROWS 64
#define MM_PANEL_COLS 192
#define MM_TILE_SPAN 48 /* weight rows per AVX-512 register tile: a task's rows come in these */
size_t mm_scratch_floats(int max_k);

/* Per-shape statistics of parallel regions (mm_ctx_track_shapes): a region's shape is its first
 * job's n x k, element size, whether it is fused (w3), the number of jobs and whether m is small
 * (decode); regions of other shapes past MM_SHAPES_MAX are not counted. */
#define MM_SHAPES_MAX 32
typedef struct mm_shape_stat {
    int n, k, es, fused, jobs, small; /* the shape */
    uint64_t calls;                   /* regions */
    uint64_t bytes;                   /* weight bytes read */
    uint64_t flops;                   /* 2 m n k per product */
    uint64_t ns, wait_ns;             /* wall time; first thread done to last */
} mm_shape_stat;

/* A thread's AMX buffers (matmul_amx.c), grown as needed: the inputs of one job split into A
 * tiles, kept for the rest of the region (kserial: mm_run's region; 0: not kept), the weights of
 * one span split into B tiles (followed by a 16 x 16 stage for short output tiles). */
typedef struct mm_amx_buf {
    uint16_t *xa, *wb;
    size_t xa_cap, wb_cap; /* bytes */
    const float *kx;       /* whose inputs xa holds */
    int km, kldx, kk;
    uint64_t kserial;
} mm_amx_buf;

typedef struct mm_ctx {
    spine_pool *pool; /* may be NULL */
    int nthreads;
    float **scratch; /* per thread, mm_scratch_floats(max_k) each */
    mm_amx_buf *amx; /* per thread */
    uint64_t serial; /* mm_run's regions, counted */
    /* task table, grown as needed */
    int *task_job, *task_row0, *task_rows;
    int task_cap;
    /* statistics */
    uint64_t flops;        /* 2 m n k per product */
    uint64_t ns;           /* wall time inside mm_run's parallel regions */
    uint64_t wait_ns;      /* summed over regions: the first thread done to the last (imbalance) */
    uint64_t *t_end;       /* per thread: when it finished its last task of the current region */
    mm_shape_stat *shapes; /* NULL, or MM_SHAPES_MAX entries (mm_ctx_track_shapes) */
    int nshapes;
    bool shapes_on; /* count regions into shapes now */
} mm_ctx;

spine_status mm_ctx_init(mm_ctx *c, spine_pool *pool, int max_k, spine_error *err);
void mm_ctx_free(mm_ctx *c);
/* Keep per-shape statistics of the regions run while c->shapes_on is set. */
spine_status mm_ctx_track_shapes(mm_ctx *c, spine_error *err);
/* Run jobs (m = 0 jobs are skipped) in one parallel region. */
spine_status mm_run(mm_ctx *c, const mm_job *jobs, int njobs, spine_error *err);

/* One task's worth of work: rows [r0, r0 + nr) of job j, on thread `thread` of c's pool (its
 * scratch), outside mm_run (an MoE placement runs whole jobs this way). */
void mm_job_rows(mm_ctx *c, int thread, const mm_job *j, int r0, int nr);

/* Small-m kernels (m <= MM_SMALL_M): y[i, r] = x_i . W_r for rows r in [r0, r0 + nr). */
#define MM_SMALL_M 4
void mm_small_scalar(const float *x, int m, int ldx, const mm_weight *w, int r0, int nr, float *y,
                     int ldy);
/* scratch: MM_SMALL_M * k floats (BF16 input rows are re-laid there) */
void mm_small_avx2(const float *x, int m, int ldx, const mm_weight *w, int r0, int nr, float *y,
                   int ldy, float *scratch);
/* Register-tiled product for any m; the mid-size path. scratch: mm_scratch_floats(k). */
void mm_tile_avx2(const float *x, int m, int ldx, const mm_weight *w, int r0, int nr, float *y,
                  int ldy, float *scratch);
/* AVX-512, on panels only (r0 a multiple of 16): the same two kernels (small: m <=
 * 2 * MM_SMALL_M in one pass), in the scalar reference's order, so bitwise equal to
 * mm_small_scalar. Within each ISA and layout the small and tiled kernels sum each output in
 * the same order, so a row's result is bitwise the same whatever m it is computed with (with
 * AMX on: the same for every m past 8, within F32 rounding of m <= 8). */
void mm_small_avx512(const float *x, int m, int ldx, const mm_weight *w, int r0, int nr, float *y,
                     int ldy);
void mm_tile_avx512(const float *x, int m, int ldx, const mm_weight *w, int r0, int nr, float *y,
                    int ldy, float *scratch);
/* AMX (matmul_amx.c): products on the tile unit to within F32 rounding, inputs and F32 weights
 * split into three BF16 parts (BF16 weights as they lie); on panels, m > 2 * MM_SMALL_M, where
 * the CPU and kernel allow (mm_amx_runs) and mm_set_amx / SPINE_AMX=0 do not turn it off. */
bool mm_amx_runs(void);
/* -1: on where it runs unless the environment says SPINE_AMX=0 (the default); 0 off; 1 on
 * where it runs. For tests and `spine bench matmul --amx`. */
void mm_set_amx(int on);
bool mm_amx_on(void);
/* Tests: the most bytes of split inputs a thread keeps (more rows go in blocks; 0: 64 MiB). */
void mm_amx_set_x_cap(size_t bytes);
size_t mm_amx_x_bytes(int m, int k); /* the split inputs' bytes */
void mm_amx_split_x(const float *x, int m, int ldx, int k, uint16_t *xa);
/* rows [r0, r0 + nr) of w, whole groups of 16 (r0 a multiple of 16), from the split inputs xa:
 * wb (64-byte aligned) holds, for F32 weights, 2 (m <= 64) or ceil(k / 32) chunks of 6 KiB, for
 * BF16 2 KiB; stage 256 floats */
void mm_tile_amx(const uint16_t *xa, int m, const mm_weight *w, int r0, int nr, float *y, int ldy,
                 uint16_t *wb, float *stage);
/* Cap the kernels' ISA (0 scalar small-m + BLAS, 1 AVX2, 2 AVX-512: sls_isa values; -1: the
 * best this CPU runs under SPINE_ISA). For tests and `spine bench matmul --isa`. */
void mm_set_isa(int isa);
int mm_isa(void);
/* Tests: take the portable paths (scalar small-m kernel, BLAS) even where AVX2 exists. */
void mm_set_portable(bool on);
float mm_silu(float v);
/* y += a * x, AVX2 when present (the portable attention path). */
void mm_axpy(float *y, float a, const float *x, int n);
void mm_axpy_avx2(float *y, float a, const float *x, int n);
void mm_swiglu_avx2(float *y, const float *y3, int n);

#endif
