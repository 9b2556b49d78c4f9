/* store_mem.c: the memory store: rows held in memory (or a mapped file) in one of the row
 * layouts, read by the fastest SLS kernel this CPU runs. It borrows its rows. */
#include "../kernels/kernels.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct store_mem {
    spine_store base;
    sls_table table;
    sls_fn kernel;
    atomic_uint_fast64_t lookups, rows_read;
} store_mem;

static spine_status mem_lookup(spine_store *s, const spine_bags *b, spine_error *err) {
    (void)err;
    store_mem *m = (store_mem *)s;
    m->kernel(&m->table, b);
    atomic_fetch_add_explicit(&m->lookups, (uint64_t)b->nbags, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->rows_read, (uint64_t)(b->offsets[b->nbags] - b->offsets[0]),
                              memory_order_relaxed);
    return SPINE_OK;
}

static void mem_stats(const spine_store *s, spine_store_stats *out) {
    store_mem *m = (store_mem *)s;
    out->lookups = atomic_load_explicit(&m->lookups, memory_order_relaxed);
    out->rows_read = atomic_load_explicit(&m->rows_read, memory_order_relaxed);
}

static void mem_destroy(spine_store *s) {
    free(s);
}

static const spine_store_ops mem_ops = {"memory", mem_lookup, mem_stats, mem_destroy};

spine_status spine_store_mem_create(const char *name, const void *data, int64_t rows, int dim,
                                    spine_rowtype rowtype, spine_store **out, spine_error *err) {
    *out = NULL;
    if (rows <= 0 || dim <= 0 || (rows > 0 && !data))
        return spine_fail(err, SPINE_ERR_INVALID, "table '%s': %lld rows of dim %d", name,
                          (long long)rows, dim);
    sls_fn k = sls_kernel(rowtype, sls_best_isa());
    if (!k) k = sls_kernel(rowtype, SLS_ISA_SCALAR);
    store_mem *m = calloc(1, sizeof *m);
    if (!m) return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    m->base.ops = &mem_ops;
    snprintf(m->base.name, sizeof m->base.name, "%s", name);
    m->base.rows = rows;
    m->base.dim = dim;
    m->base.rowtype = rowtype;
    m->table = (sls_table){data, rows, spine_row_bytes(rowtype, dim), dim, rowtype};
    m->kernel = k;
    *out = &m->base;
    return SPINE_OK;
}
