/* store.c: the embedding-store interface's single entry point. Every lookup, whatever store
 * answers it, passes through spine_store_lookup, which checks the CSR batch (offsets
 * non-decreasing, every index inside the table) before the store sees it: one place where an
 * index from outside is bounds-checked, for every store. */
#include "../base/base.h"
#include "../kernels/kernels.h"

static spine_status check(const spine_store *s, const spine_bags *b, spine_error *err) {
    if (b->nbags < 0 || !b->offsets || (b->nbags > 0 && !b->out))
        return spine_fail(err, SPINE_ERR_INVALID, "table '%s': malformed bag batch", s->name);
    if (b->nbags == 0) return SPINE_OK;
    if (b->out_stride < (size_t)s->dim)
        return spine_fail(err, SPINE_ERR_INVALID, "table '%s': output stride %zu below dim %d",
                          s->name, b->out_stride, s->dim);
    if (b->offsets[0] < 0)
        return spine_fail(err, SPINE_ERR_INVALID, "table '%s': negative offset", s->name);
    for (int32_t i = 0; i < b->nbags; i++) {
        if (b->offsets[i + 1] < b->offsets[i])
            return spine_fail(err, SPINE_ERR_INVALID, "table '%s': bag %d has negative length",
                              s->name, i);
    }
    const int64_t *idx = b->indices;
    const uint64_t rows = (uint64_t)s->rows;
    int64_t end = b->offsets[b->nbags];
    if (end > b->offsets[0] && !idx)
        return spine_fail(err, SPINE_ERR_INVALID, "table '%s': no indices", s->name);
    const int64_t p0 = b->offsets[0];
    if (end > p0 && !sls_indices_in_range(idx + p0, (size_t)(end - p0), s->rows, sls_best_isa())) {
        for (int64_t p = b->offsets[0]; p < end; p++) {
            if ((uint64_t)idx[p] >= rows)
                return spine_fail(err, SPINE_ERR_RANGE,
                                  "table '%s': index %lld at values[%lld] is outside [0, %lld)",
                                  s->name, (long long)idx[p], (long long)p, (long long)s->rows);
        }
    }
    return SPINE_OK;
}

spine_status spine_store_lookup(spine_store *s, const spine_bags *b, spine_error *err) {
    spine_status st = check(s, b, err);
    return st || b->nbags == 0 ? st : s->ops->lookup(s, b, err);
}

spine_status spine_store_lookup_many(spine_store *const *s, const spine_bags *b, int n,
                                     spine_error *err) {
    if (n < 0 || (n > 0 && (!s || !b)))
        return spine_fail(err, SPINE_ERR_INVALID, "malformed multi-table lookup");
    for (int i = 0; i < n; i++) {
        spine_status st = check(s[i], &b[i], err);
        if (st) return st;
    }
    for (int i = 0; i < n;) {
        spine_status st;
        int j = i + 1;
        if (s[i]->ops->lookup_many) { /* the run of stores sharing it */
            while (j < n && s[j]->ops->lookup_many == s[i]->ops->lookup_many) j++;
            st = s[i]->ops->lookup_many(s + i, b + i, j - i, err);
        } else {
            st = b[i].nbags ? s[i]->ops->lookup(s[i], &b[i], err) : SPINE_OK;
        }
        if (st) return st;
        i = j;
    }
    return SPINE_OK;
}

void spine_store_stats_get(const spine_store *s, spine_store_stats *out) {
    memset(out, 0, sizeof *out);
    if (s->ops->stats) s->ops->stats(s, out);
}

void spine_store_free(spine_store *s) {
    if (s) s->ops->destroy(s);
}
