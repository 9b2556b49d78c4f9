/* profile.c: hot-entry profiling for DLRM tables (RecNMP's software half): temporal locality in
 * synthetic query traces, counting row frequencies from a trace, profile files, and the hit
 * rate a hot tier of a given size would reach.
 *
 * A trace is a batch file (docs/MODEL_FORMAT.md, "Batch files"): its samples are the queries in
 * arrival order. A profile is a safetensors file with one I32 tensor "counts.{t}" [rows of
 * table t] per table: how often the trace read each row (saturating at INT32_MAX). */
#include "dlrm.h"

#include <stdio.h>
#include <stdlib.h>

#define LOCALITY_WINDOW 4096

void dlrm_trace_locality(const spine_model_desc *d, int32_t batch, int64_t *values,
                         const int32_t *lengths, double p, spine_rng *rng) {
    if (p <= 0) return;
    int64_t ring[LOCALITY_WINDOW];
    int64_t k = 0;
    for (int t = 0; t < d->num_tables; t++) {
        int n = 0, head = 0;
        int64_t cnt = 0;
        for (int32_t b = 0; b < batch; b++) cnt += lengths[(size_t)t * batch + b];
        for (int64_t i = 0; i < cnt; i++, k++) {
            if (n > 0 && spine_rng_uniform(rng) < p)
                values[k] =
                    ring[(head - 1 - (int)spine_rng_below(rng, (uint64_t)n) + LOCALITY_WINDOW) %
                         LOCALITY_WINDOW];
            ring[head] = values[k];
            head = (head + 1) % LOCALITY_WINDOW;
            if (n < LOCALITY_WINDOW) n++;
        }
    }
}

spine_status dlrm_profile_count(const spine_model_desc *d, const spine_batch *b, int64_t nvalues,
                                uint32_t *const *counts, spine_error *err) {
    int64_t k = 0;
    for (int t = 0; t < d->num_tables; t++) {
        int64_t cnt = 0;
        for (int32_t s = 0; s < b->batch; s++) cnt += b->lengths[(size_t)t * b->batch + s];
        if (k + cnt > nvalues)
            return spine_fail(err, SPINE_ERR_FORMAT, "the lengths sum past the %lld values",
                              (long long)nvalues);
        for (int64_t i = 0; i < cnt; i++, k++) {
            int64_t v = b->values[k];
            if (v < 0 || v >= d->tables[t].rows)
                return spine_fail(
                    err, SPINE_ERR_RANGE, "values[%lld] = %lld is outside table %d (%s, %lld rows)",
                    (long long)k, (long long)v, t, d->tables[t].name, (long long)d->tables[t].rows);
            if (counts[t][v] != UINT32_MAX) counts[t][v]++;
        }
    }
    return SPINE_OK;
}

spine_status dlrm_profile_write(const char *path, const spine_model_desc *d,
                                uint32_t *const *counts, spine_error *err) {
    spine_tensors ts = {0};
    spine_status st = SPINE_OK;
    for (int t = 0; t < d->num_tables && !st; t++) {
        size_t bytes = (size_t)d->tables[t].rows * sizeof(int32_t);
        int32_t *c = spine_alloc_aligned(bytes ? bytes : 4);
        char name[32];
        snprintf(name, sizeof name, "counts.%d", t);
        int64_t shape[1] = {d->tables[t].rows};
        if (!c) {
            st = spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
            break;
        }
        for (int64_t r = 0; r < d->tables[t].rows; r++)
            c[r] = counts[t][r] > INT32_MAX ? INT32_MAX : (int32_t)counts[t][r];
        if (!st_add_owned(&ts, name, SPINE_DT_I32, 1, shape, c, bytes)) {
            spine_free_aligned(c);
            st = spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
        }
    }
    if (!st) st = st_write(path, &ts, "{\"format\":\"spine-profile-1\"}", NULL, NULL, err);
    st_free(&ts);
    return st;
}

spine_status dlrm_profile_from_tensors(const spine_tensors *ts, const spine_model_desc *d,
                                       uint32_t **counts, spine_error *err) {
    if ((int)ts->n != d->num_tables)
        return spine_fail(err, SPINE_ERR_FORMAT, "%zu tables profiled, the model has %d", ts->n,
                          d->num_tables);
    for (int t = 0; t < d->num_tables; t++) {
        char name[32];
        snprintf(name, sizeof name, "counts.%d", t);
        const spine_tensor *x = st_find(ts, name);
        if (!x || x->dtype != SPINE_DT_I32 || x->ndim != 1 || x->shape[0] != d->tables[t].rows)
            return spine_fail(err, SPINE_ERR_FORMAT,
                              "'%s' must be I32 [%lld] (table %d of this model)", name,
                              (long long)d->tables[t].rows, t);
        const int32_t *c = x->data;
        for (int64_t r = 0; r < d->tables[t].rows; r++) {
            if (c[r] < 0)
                return spine_fail(err, SPINE_ERR_FORMAT, "%s[%lld] is negative", name,
                                  (long long)r);
            counts[t][r] = (uint32_t)c[r];
        }
    }
    return SPINE_OK;
}

spine_status dlrm_profile_read(const char *path, const spine_model_desc *d, uint32_t **counts,
                               spine_error *err) {
    spine_tensors ts;
    spine_status st = st_open(path, &ts, err);
    if (st) return st;
    st = dlrm_profile_from_tensors(&ts, d, counts, err);
    if (st) spine_error_prefix(err, "%s: ", path);
    st_free(&ts);
    return st;
}

typedef struct hot_row {
    uint32_t count;
    uint32_t bytes;
} hot_row;

static int by_count_desc(const void *a, const void *b) {
    uint32_t x = ((const hot_row *)a)->count, y = ((const hot_row *)b)->count;
    return (x < y) - (x > y);
}

spine_status dlrm_profile_coverage(const spine_model_desc *d, uint32_t *const *counts,
                                   const double *budgets_mb, int nb, double *hit_rate,
                                   spine_error *err) {
    /* the rows a hot tier would take (seen at least twice, hottest first across tables, as
     * dlrm_model_set_hot chooses), and the share of lookups they served */
    size_t n = 0;
    uint64_t total = 0;
    for (int t = 0; t < d->num_tables; t++)
        for (int64_t r = 0; r < d->tables[t].rows; r++) {
            total += counts[t][r];
            n += counts[t][r] >= 2;
        }
    hot_row *h = malloc((n ? n : 1) * sizeof *h);
    if (!h) return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    size_t k = 0;
    for (int t = 0; t < d->num_tables; t++) {
        uint32_t rb = (uint32_t)spine_row_bytes(d->tables[t].rowtype, d->emb_dim);
        for (int64_t r = 0; r < d->tables[t].rows; r++)
            if (counts[t][r] >= 2) h[k++] = (hot_row){counts[t][r], rb};
    }
    qsort(h, n, sizeof *h, by_count_desc);
    for (int i = 0; i < nb; i++) {
        double budget = budgets_mb[i] * (1 << 20), used = 0;
        uint64_t hits = 0;
        for (size_t j = 0; j < n && used + h[j].bytes <= budget; j++) {
            used += h[j].bytes;
            hits += h[j].count;
        }
        hit_rate[i] = total ? (double)hits / (double)total : 0.0;
    }
    free(h);
    return SPINE_OK;
}
