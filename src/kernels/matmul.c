/* matmul.c: the weight-product driver (jobs split into row blocks over the pool), the scalar
 * small-m kernel, BF16 widening and the BLAS path. See matmul.h. */
#include "matmul.h"

#include "kernels.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>

size_t mm_scratch_floats(int max_k) {
    size_t k = (size_t)(max_k > 0 ? max_k : 1);
    return SPINE_MAX(SPINE_MAX((size_t)MM_BF16_BLOCK, (size_t)MM_TILE_ROWS) * k,
                     (size_t)64 * MM_PANEL_COLS);
}

float mm_silu(float v) {
    return v / (1.0f + expf(-v));
}

static inline float w_at(const mm_weight *w, size_t i) {
    if (w->dt == SPINE_DT_BF16) return spine_bf16_to_f32(((const uint16_t *)w->data)[i]);
    return ((const float *)w->data)[i];
}

void mm_small_scalar(const float *x, int m, int ldx, const mm_weight *w, int r0, int nr, float *y,
                     int ldy) {
    for (int r = r0; r < r0 + nr; r++) {
        size_t base = (size_t)r * (size_t)w->k;
        for (int i = 0; i < m; i++) {
            const float *xi = x + (size_t)i * ldx;
            float s = 0.0f;
            if (w->packed)
                for (int k = 0; k < w->k; k++) s = fmaf(xi[k], w_at(w, mm_index(w, r, k)), s);
            else
                for (int k = 0; k < w->k; k++) s = fmaf(xi[k], w_at(w, base + k), s);
            y[(size_t)i * ldy + r] = s;
        }
    }
}

spine_status mm_pack(mm_weight *w, spine_error *err) {
    if (w->packed || w->n <= 0 || w->k <= 0) return SPINE_OK;
    size_t es = spine_dtype_size(w->dt), k = (size_t)w->k;
    if (es != 2 && es != 4)
        return spine_fail(err, SPINE_ERR_UNSUPPORTED, "panels: F32 or BF16 weights only");
    uint8_t *tmp = malloc(16 * k * es);
    if (!tmp) return spine_fail(err, SPINE_ERR_NOMEM, "out of memory (packing weights)");
    uint8_t *d = (uint8_t *)w->data; /* writable: the caller's promise */
    mm_weight lay = *w;              /* the target layout, as mm_index defines it */
    lay.packed = true;
    for (int g0 = 0; g0 < w->n; g0 += 16) {
        size_t h = (size_t)SPINE_MIN(16, w->n - g0), base = (size_t)g0 * k;
        memcpy(tmp, d + base * es, h * k * es);
        for (size_t q = 0; q < h; q++)
            for (size_t c = 0; c < k; c++) {
                size_t at = mm_index(&lay, g0 + (int)q, (int)c);
                if (es == 4)
                    ((uint32_t *)d)[at] = ((const uint32_t *)tmp)[q * k + c];
                else
                    ((uint16_t *)d)[at] = ((const uint16_t *)tmp)[q * k + c];
            }
    }
    free(tmp);
    w->packed = true;
    return SPINE_OK;
}

static int isa_cap = -1; /* set by tests and benchmarks before any product runs */
void mm_set_isa(int isa) {
    isa_cap = isa;
}
void mm_set_portable(bool on) {
    isa_cap = on ? SLS_ISA_SCALAR : -1;
}
int mm_isa(void) {
    /* asked for every product and every attention row: sls_best_isa's atomics are cheap, but
     * not free at that rate (0.4% of a prefill) */
    static int best = -1; /* a CPU property; racing writers store the same value */
    if (best < 0) best = (int)sls_best_isa();
    return isa_cap >= 0 && isa_cap < best ? isa_cap : best;
}

bool mm_wants_panels(void) {
#if defined(__x86_64__) && defined(SPINE_HAVE_AVX2)
    return mm_isa() >= SLS_ISA_AVX512;
#else
    return false;
#endif
}

#if defined(__x86_64__) && defined(SPINE_HAVE_AVX2) /* every caller is under the same test */
static int have_avx2(void) {
    return mm_isa() >= SLS_ISA_AVX2;
}
static int have_avx512(void) {
    return mm_isa() >= SLS_ISA_AVX512;
}
#endif

static void small_rows(const float *x, int m, int ldx, const mm_weight *w, int r0, int nr, float *y,
                       int ldy, float *scratch) {
    for (int i0 = 0; i0 < m; i0 += MM_SMALL_M) {
        int mi = SPINE_MIN(MM_SMALL_M, m - i0);
        const float *xi = x + (size_t)i0 * ldx;
        float *yi = y + (size_t)i0 * ldy;
#if defined(__x86_64__) && defined(SPINE_HAVE_AVX2)
        if (have_avx2()) {
            mm_small_avx2(xi, mi, ldx, w, r0, nr, yi, ldy, scratch);
            continue;
        }
#endif
        mm_small_scalar(xi, mi, ldx, w, r0, nr, yi, ldy);
    }
}

void mm_axpy(float *y, float a, const float *x, int n) {
#if defined(__x86_64__) && defined(SPINE_HAVE_AVX2)
    if (have_avx2()) {
        mm_axpy_avx2(y, a, x, n);
        return;
    }
#endif
    for (int i = 0; i < n; i++) y[i] = fmaf(a, x[i], y[i]);
}

static int amx_cap = -1;
void mm_set_amx(int on) {
    amx_cap = on;
}
#define AMX_X_CAP ((size_t)64 << 20)
static size_t amx_x_cap = AMX_X_CAP;
void mm_amx_set_x_cap(size_t bytes) {
    amx_x_cap = bytes ? bytes : AMX_X_CAP;
}
bool mm_amx_on(void) {
#if defined(__x86_64__) && defined(SPINE_HAVE_AMX)
    static int env = -1; /* SPINE_AMX=0 turns it off; a process property, read once */
    if (env < 0) {
        const char *e = getenv("SPINE_AMX");
        env = e && strcmp(e, "0") == 0 ? 0 : 1;
    }
    return amx_cap != 0 && (amx_cap == 1 || env) && mm_isa() >= SLS_ISA_AVX512 && mm_amx_runs();
#else
    return false;
#endif
}

#if defined(__x86_64__) && defined(SPINE_HAVE_AMX)
/* buffer *p of *cap bytes grown to at least need (64-byte aligned); false when out of memory */
static bool grow(void **p, size_t *cap, size_t need) {
    if (*cap >= need) return true;
    size_t n = SPINE_MAX(need, 2 * *cap);
    void *q = spine_alloc_aligned(n);
    if (!q) return false;
    spine_free_aligned(*p);
    *p = q;
    *cap = n;
    return true;
}

/* Panels on the tile unit (whole groups; a last short group through the AVX-512 tiles);
 * false when a buffer cannot grow (the caller takes the AVX-512 tiles) */
static bool amx_product(const float *x, int m, int ldx, const mm_weight *w, int r0, int nr,
                        float *y, int ldy, float *scratch, mm_amx_buf *ab, uint64_t serial) {
    int k = w->k, nch = (k + 31) / 32, whole = SPINE_MIN(nr, w->n / 16 * 16 - r0) / 16 * 16;
    if (whole <= 0) return false;
    /* the inputs in blocks whose split stays within amx_x_cap (6 bytes per input element: a
     * long prompt's would otherwise grow a thread's buffer without bound) */
    int mb =
        (int)SPINE_MIN((size_t)m, SPINE_MAX((size_t)1, amx_x_cap / mm_amx_x_bytes(16, k)) * 16);
    /* F32: split weights (a ring of two chunks, or the span's); BF16: two zero-padded tiles;
     * then the 1 KiB stage for short output tiles */
    size_t wneed =
        w->dt == SPINE_DT_BF16 ? 2048 : (size_t)((mb + 15) / 16 <= 4 ? 2 : nch) * 6 * 1024;
    void *xa = ab->xa, *wb = ab->wb;
    bool ok = grow(&xa, &ab->xa_cap, mm_amx_x_bytes(mb, k)) && grow(&wb, &ab->wb_cap, wneed + 1024);
    if (!ok || xa != ab->xa) ab->kserial = 0; /* (a new buffer holds no inputs yet) */
    ab->xa = xa;
    ab->wb = wb;
    if (!ok) return false;
    for (int i0 = 0; i0 < m; i0 += mb) {
        const int mi = SPINE_MIN(mb, m - i0);
        const float *xi = x + (size_t)i0 * ldx;
        if (!(serial && ab->kserial == serial && ab->kx == xi && ab->km == mi && ab->kldx == ldx &&
              ab->kk == k)) {
            mm_amx_split_x(xi, mi, ldx, k, ab->xa);
            ab->kx = xi;
            ab->km = mi;
            ab->kldx = ldx;
            ab->kk = k;
            ab->kserial = serial;
        }
        mm_tile_amx(ab->xa, mi, w, r0, whole, y + (size_t)i0 * ldy, ldy, ab->wb,
                    (float *)((char *)ab->wb + wneed));
    }
    if (whole < nr) mm_tile_avx512(x, m, ldx, w, r0 + whole, nr - whole, y, ldy, scratch);
    return true;
}
#endif

/* y[:, r0:r0+nr] = x . W[r0:r0+nr]^T; ab: the thread's AMX buffers (NULL: no AMX) */
static void product(const float *x, int m, int ldx, const mm_weight *w, int r0, int nr, float *y,
                    int ldy, float *scratch, mm_amx_buf *ab, uint64_t serial) {
    if (w->packed) { /* panels: AVX-512, or the scalar reference where it cannot run */
#if defined(__x86_64__) && defined(SPINE_HAVE_AVX2)
        if (have_avx512()) {
            if (m <= 2 * MM_SMALL_M) mm_small_avx512(x, m, ldx, w, r0, nr, y, ldy);
#if defined(SPINE_HAVE_AMX)
            else if (ab && mm_amx_on() &&
                     amx_product(x, m, ldx, w, r0, nr, y, ldy, scratch, ab, serial))
                return;
#endif
            else
                mm_tile_avx512(x, m, ldx, w, r0, nr, y, ldy, scratch);
            return;
        }
#endif
        mm_small_scalar(x, m, ldx, w, r0, nr, y, ldy);
        return;
    }
    if (m <= 2 * MM_SMALL_M) {
        small_rows(x, m, ldx, w, r0, nr, y, ldy, scratch);
        return;
    }
#if defined(__x86_64__) && defined(SPINE_HAVE_AVX2)
    /* Register tiles for every m: at these shapes they beat OpenBLAS's packing (spine bench
     * matmul --m 32 --n 448: 63-64 vs 53-58 GFLOP/s per thread), and mixtral-mini prefill runs
     * 2.5x faster than with BLAS (docs/BENCHMARKS.md). BLAS stays the path without AVX2. */
    if (have_avx2()) {
        mm_tile_avx2(x, m, ldx, w, r0, nr, y, ldy, scratch);
        return;
    }
#endif
    int k = w->k;
    if (w->dt == SPINE_DT_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, nr, k, 1.0f, x, ldx,
                    (const float *)w->data + (size_t)r0 * k, k, 0.0f, y + r0, ldy);
        return;
    }
    const uint16_t *src = w->data;
    for (int b = r0; b < r0 + nr; b += MM_BF16_BLOCK) {
        int nb = SPINE_MIN(MM_BF16_BLOCK, r0 + nr - b);
        const uint16_t *s = src + (size_t)b * k;
        size_t cnt = (size_t)nb * k;
        uint32_t *d = (uint32_t *)scratch;
        for (size_t i = 0; i < cnt; i++) d[i] = (uint32_t)s[i] << 16; /* exact widening */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, nb, k, 1.0f, x, ldx, scratch, k,
                    0.0f, y + b, ldy);
    }
}

static void job_rows(mm_ctx *c, int thread, const mm_job *j, int r0, int nr, uint64_t serial) {
    float *scratch = c->scratch[thread];
    mm_amx_buf *ab = c->amx ? &c->amx[thread] : NULL;
    product(j->x, j->m, j->ldx, &j->w, r0, nr, j->y, j->ldy, scratch, ab, serial);
    if (!j->w3.data) return;
    product(j->x, j->m, j->ldx, &j->w3, r0, nr, j->y3, j->ldy, scratch, ab, serial);
    for (int i = 0; i < j->m; i++) {
        float *y = j->y + (size_t)i * j->ldy + r0;
        const float *y3 = j->y3 + (size_t)i * j->ldy + r0;
#if defined(__x86_64__) && defined(SPINE_HAVE_AVX2)
        if (have_avx2()) {
            mm_swiglu_avx2(y, y3, nr);
            continue;
        }
#endif
        for (int r = 0; r < nr; r++) y[r] = mm_silu(y[r]) * y3[r];
    }
}

void mm_job_rows(mm_ctx *c, int thread, const mm_job *j, int r0, int nr) {
    job_rows(c, thread, j, r0, nr, 0); /* outside a region: the split inputs are not kept */
}

spine_status mm_ctx_init(mm_ctx *c, spine_pool *pool, int max_k, spine_error *err) {
    memset(c, 0, sizeof *c);
    c->pool = pool;
    c->nthreads = pool ? spine_pool_size(pool) : 1;
    c->scratch = calloc((size_t)c->nthreads, sizeof *c->scratch);
    c->t_end = calloc((size_t)c->nthreads, sizeof *c->t_end);
    c->amx = calloc((size_t)c->nthreads, sizeof *c->amx);
    if (!c->scratch || !c->t_end || !c->amx) {
        mm_ctx_free(c);
        return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    }
    for (int t = 0; t < c->nthreads; t++) {
        c->scratch[t] = spine_alloc_aligned(mm_scratch_floats(max_k) * sizeof(float));
        if (!c->scratch[t]) {
            mm_ctx_free(c);
            return spine_fail(err, SPINE_ERR_NOMEM, "out of memory (matmul scratch)");
        }
    }
    return SPINE_OK;
}

void mm_ctx_free(mm_ctx *c) {
    if (c->scratch)
        for (int t = 0; t < c->nthreads; t++) spine_free_aligned(c->scratch[t]);
    if (c->amx)
        for (int t = 0; t < c->nthreads; t++) {
            spine_free_aligned(c->amx[t].xa);
            spine_free_aligned(c->amx[t].wb);
        }
    free(c->amx);
    free(c->scratch);
    free(c->t_end);
    free(c->task_job);
    free(c->task_row0);
    free(c->task_rows);
    free(c->shapes);
    memset(c, 0, sizeof *c);
}

spine_status mm_ctx_track_shapes(mm_ctx *c, spine_error *err) {
    if (c->shapes) return SPINE_OK;
    c->shapes = calloc(MM_SHAPES_MAX, sizeof *c->shapes);
    if (!c->shapes) return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    return SPINE_OK;
}

/* a finished region into c->shapes, by its first job's shape */
static void count_shape(mm_ctx *c, const mm_job *jobs, int njobs, uint64_t ns, uint64_t wait) {
    const mm_job *j0 = &jobs[0];
    mm_shape_stat key = {.n = j0->w.n,
                         .k = j0->w.k,
                         .es = (int)spine_dtype_size(j0->w.dt),
                         .fused = j0->w3.data != NULL,
                         .jobs = njobs,
                         .small = j0->m <= 2 * MM_SMALL_M};
    int i = 0;
    while (i < c->nshapes && !(c->shapes[i].n == key.n && c->shapes[i].k == key.k &&
                               c->shapes[i].es == key.es && c->shapes[i].fused == key.fused &&
                               c->shapes[i].jobs == key.jobs && c->shapes[i].small == key.small))
        i++;
    if (i == c->nshapes) {
        if (i == MM_SHAPES_MAX) return;
        c->shapes[c->nshapes++] = key;
    }
    mm_shape_stat *e = &c->shapes[i];
    for (int q = 0; q < njobs; q++)
        if (jobs[q].m > 0) {
            const uint64_t nk = (uint64_t)jobs[q].w.n * (uint64_t)jobs[q].w.k,
                           prods = jobs[q].w3.data ? 2u : 1u;
            e->bytes += nk * spine_dtype_size(jobs[q].w.dt) * prods;
            e->flops += 2u * (uint64_t)jobs[q].m * nk * prods;
        }
    e->calls++;
    e->ns += ns;
    e->wait_ns += wait;
}

typedef struct run_arg {
    mm_ctx *c;
    const mm_job *jobs;
} run_arg;

static void run_task(void *arg, int task, int thread) {
    run_arg *a = arg;
    const mm_job *j = &a->jobs[a->c->task_job[task]];
    job_rows(a->c, thread, j, a->c->task_row0[task], a->c->task_rows[task], a->c->serial);
    a->c->t_end[thread] = spine_now_ns();
}

static spine_status grow_tasks(mm_ctx *c, int need, spine_error *err) {
    if (need <= c->task_cap) return SPINE_OK;
    int cap = SPINE_MAX(need, 2 * c->task_cap);
    int *a = realloc(c->task_job, (size_t)cap * sizeof *a);
    if (a) c->task_job = a;
    int *b = realloc(c->task_row0, (size_t)cap * sizeof *b);
    if (b) c->task_row0 = b;
    int *d = realloc(c->task_rows, (size_t)cap * sizeof *d);
    if (d) c->task_rows = d;
    if (!a || !b || !d) return spine_fail(err, SPINE_ERR_NOMEM, "out of memory (matmul tasks)");
    c->task_cap = cap;
    return SPINE_OK;
}

#define HEAD_PCT 80 /* small m: the share of a job's rows in one block per thread (mm_run) */

spine_status mm_run(mm_ctx *c, const mm_job *jobs, int njobs, spine_error *err) {
    /* Split the total weight rows into blocks: about 4 per thread for load balance when m is
     * large (compute bound), never under 16 rows. When m is small (bandwidth bound: long
     * sequential streams) the first HEAD_PCT% of each job's rows go as one block per thread,
     * all jobs' heads first, then the rest of each job as two blocks per thread: a thread that
     * streams slower (a vCPU sharing its core with other work) leaves a short block for the
     * other to take, not half a job. With equal halves one thread waited for the other 6-23%
     * of the decode products' time on a 2-vCPU VM; with the tails 3-10% (docs/BENCHMARKS.md). */
    uint64_t total = 0;
    for (int i = 0; i < njobs; i++)
        if (jobs[i].m > 0) total += (uint64_t)jobs[i].w.n * (jobs[i].w3.data ? 2 : 1);
    if (total == 0) return SPINE_OK;
    for (int i = 0; i < njobs; i++) {
        const mm_job *j = &jobs[i];
        if (j->m > 0)
            c->flops += (j->w3.data ? 2ull : 1ull) * 2ull * (uint64_t)j->m * (uint64_t)j->w.n *
                        (uint64_t)j->w.k;
    }
    int ntasks = 0;
    for (int pass = 0; pass < 2; pass++) {
        int t = 0;
        for (int phase = 0; phase < 2; phase++)
            for (int i = 0; i < njobs; i++) {
                const mm_job *j = &jobs[i];
                if (j->m <= 0) continue;
                bool small = j->m <= 2 * MM_SMALL_M;
                int r_begin = 0, r_end = j->w.n, per;
                if (small && c->nthreads > 1) {
                    int head = (int)((int64_t)j->w.n * HEAD_PCT / 100) / (16 * c->nthreads) * 16 *
                               c->nthreads;
                    if (phase == 0)
                        r_end = head, per = c->nthreads;
                    else
                        r_begin = head, per = 2 * c->nthreads;
                } else {
                    if (phase == 1) continue;
                    per = c->nthreads * (small ? 1 : 4);
                }
                int n = r_end - r_begin;
                if (n <= 0) continue;
                int rows = (n + per - 1) / per;
                rows = SPINE_MAX(rows, 16);
                if (j->w.packed) /* whole groups (decode), whole tile spans (tiles) */
                    rows = small ? (rows + 15) / 16 * 16
                                 : (rows + MM_TILE_SPAN - 1) / MM_TILE_SPAN * MM_TILE_SPAN;
                else if (!small && j->w.dt == SPINE_DT_BF16)
                    rows = (rows + MM_BF16_BLOCK - 1) / MM_BF16_BLOCK * MM_BF16_BLOCK;
                for (int r = r_begin; r < r_end; r += rows, t++) {
                    if (pass == 1) {
                        c->task_job[t] = i;
                        c->task_row0[t] = r;
                        c->task_rows[t] = SPINE_MIN(rows, r_end - r);
                    }
                }
            }
        if (pass == 0) {
            spine_status st = grow_tasks(c, t, err);
            if (st) return st;
        }
        ntasks = t;
    }
    run_arg a = {c, jobs};
    c->serial++; /* a new region: inputs split in the last one are stale */
    const uint64_t t0 = spine_now_ns();
    for (int t = 0; t < c->nthreads; t++) c->t_end[t] = t0; /* a thread with no task: idle */
    spine_pool_run(c->pool, ntasks, run_task, &a);
    uint64_t first = UINT64_MAX, last = 0;
    for (int t = 0; t < c->nthreads; t++) {
        first = SPINE_MIN(first, c->t_end[t]);
        last = SPINE_MAX(last, c->t_end[t]);
    }
    uint64_t ns = spine_now_ns() - t0;
    c->ns += ns;
    c->wait_ns += last - first;
    if (c->shapes && c->shapes_on) count_shape(c, jobs, njobs, ns, last - first);
    return SPINE_OK;
}
