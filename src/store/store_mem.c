/* store_mem.c: the memory store: rows held in memory (or a mapped file) in one of the row
 * layouts, read by the fastest SLS kernel this CPU runs; it borrows its rows. And its variant
 * with a hot tier: a compact copy of the hottest rows, found through a bitmap with ranks. */
#include "../kernels/kernels.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct store_mem {
    spine_store base;
    sls_table table;
    sls_fn kernel;
    atomic_uint_fast64_t lookups, rows_read, hits;
    /* hot tier (owned), or NULLs */
    sls_hot_word *index;
    uint8_t *hot;
    size_t hot_bytes;
} store_mem;

static void mem_account(store_mem *m, const spine_bags *b) {
    if (b->nbags <= 0) return;
    atomic_fetch_add_explicit(&m->lookups, (uint64_t)b->nbags, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->rows_read, (uint64_t)(b->offsets[b->nbags] - b->offsets[0]),
                              memory_order_relaxed);
    /* hot rows are counted by the kernels themselves (sls_table.hot_hits) */
}

static spine_status mem_lookup(spine_store *s, const spine_bags *b, spine_error *err) {
    (void)err;
    store_mem *m = (store_mem *)s;
    m->kernel(&m->table, b);
    mem_account(m, b);
    return SPINE_OK;
}

static spine_status mem_lookup_many(spine_store *const *s, const spine_bags *b, int n,
                                    spine_error *err) {
    (void)err;
    enum { GROUP = 64 };
    sls_table t[GROUP];
    for (int i0 = 0; i0 < n; i0 += GROUP) {
        int k = SPINE_MIN(GROUP, n - i0);
        for (int i = 0; i < k; i++) t[i] = ((const store_mem *)s[i0 + i])->table;
        sls_multi(t, b + i0, k, sls_best_isa());
        for (int i = 0; i < k; i++) mem_account((store_mem *)s[i0 + i], &b[i0 + i]);
    }
    return SPINE_OK;
}

static void mem_stats(const spine_store *s, spine_store_stats *out) {
    store_mem *m = (store_mem *)s;
    out->lookups = atomic_load_explicit(&m->lookups, memory_order_relaxed);
    out->rows_read = atomic_load_explicit(&m->rows_read, memory_order_relaxed);
    out->hits = atomic_load_explicit(&m->hits, memory_order_relaxed);
}

static void mem_destroy(spine_store *s) {
    store_mem *m = (store_mem *)s;
    free(m->index);
    if (m->hot_bytes >= ((size_t)2 << 20))
        spine_free_huge(m->hot, m->hot_bytes);
    else
        spine_free_aligned(m->hot);
    free(s);
}

static const spine_store_ops mem_ops = {"memory", mem_lookup, mem_stats, mem_destroy,
                                        mem_lookup_many};

spine_status spine_store_mem_create(const char *name, const void *data, int64_t rows, int dim,
                                    spine_rowtype rowtype, spine_store **out, spine_error *err) {
    *out = NULL;
    if (rows <= 0 || dim <= 0 || (rows > 0 && !data))
        return spine_fail(err, SPINE_ERR_INVALID, "table '%s': %lld rows of dim %d", name,
                          (long long)rows, dim);
    sls_fn k = sls_kernel(rowtype, sls_best_isa(), false);
    if (!k) k = sls_kernel(rowtype, SLS_ISA_SCALAR, false);
    store_mem *m = calloc(1, sizeof *m);
    if (!m) return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    m->base.ops = &mem_ops;
    snprintf(m->base.name, sizeof m->base.name, "%s", name);
    m->base.rows = rows;
    m->base.dim = dim;
    m->base.rowtype = rowtype;
    m->table = (sls_table){.data = data,
                           .rows = rows,
                           .row_bytes = spine_row_bytes(rowtype, dim),
                           .dim = dim,
                           .rowtype = rowtype};
    m->kernel = k;
    *out = &m->base;
    return SPINE_OK;
}

size_t spine_store_hot_bytes(const spine_store *s) {
    return s->ops == &mem_ops ? ((const store_mem *)s)->hot_bytes : 0;
}

spine_status spine_store_hot_create(const char *name, const void *data, int64_t rows, int dim,
                                    spine_rowtype rowtype, const int64_t *hot, size_t nhot,
                                    size_t budget_bytes, spine_store **out, spine_error *err) {
    spine_status st = spine_store_mem_create(name, data, rows, dim, rowtype, out, err);
    if (st) return st;
    store_mem *m = (store_mem *)*out;
    size_t rb = m->table.row_bytes, words = (size_t)(rows + 63) / 64;
    size_t want = SPINE_MIN(nhot, budget_bytes / rb);
    m->index = calloc(words, sizeof *m->index);
    if (!m->index) goto nomem;
    size_t n = 0;
    for (size_t i = 0; i < nhot && n < want; i++) {
        int64_t r = hot[i];
        if (r < 0 || r >= rows) {
            spine_store_free(*out);
            *out = NULL;
            return spine_fail(err, SPINE_ERR_RANGE, "table '%s': hot row %lld outside [0, %lld)",
                              name, (long long)r, (long long)rows);
        }
        uint64_t bit = 1ull << (r & 63);
        if (!(m->index[r >> 6].bits & bit)) { /* a profile may repeat a row: count it once */
            m->index[r >> 6].bits |= bit;
            n++;
        }
    }
    if (n == 0) { /* nothing hot: a plain store, without the per-row check */
        free(m->index);
        m->index = NULL;
        return SPINE_OK;
    }
    m->hot_bytes = n * rb;
    m->hot = m->hot_bytes >= ((size_t)2 << 20) ? spine_alloc_huge(m->hot_bytes)
                                               : spine_alloc_aligned(m->hot_bytes);
    if (!m->hot) goto nomem;
    uint64_t acc = 0; /* hot rows are stored in index order; rank = hot rows before each word */
    for (size_t w = 0; w < words; w++) {
        m->index[w].rank = acc;
        for (uint64_t bits = m->index[w].bits; bits; bits &= bits - 1) {
            size_t r = w * 64 + (size_t)__builtin_ctzll(bits);
            memcpy(m->hot + (size_t)acc * rb, (const uint8_t *)data + r * rb, rb);
            acc++;
        }
    }
    m->table.hot_index = m->index;
    m->table.hot_data = m->hot;
    m->table.hot_hits = &m->hits;
    sls_fn hk = sls_kernel(rowtype, sls_best_isa(), true);
    m->kernel = hk ? hk : sls_kernel(rowtype, SLS_ISA_SCALAR, true);
    return SPINE_OK;
nomem:
    spine_store_free(*out);
    *out = NULL;
    return spine_fail(err, SPINE_ERR_NOMEM, "table '%s': cannot allocate the hot tier", name);
}
