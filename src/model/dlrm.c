/* dlrm.c: the DLRM model: building it from a configuration and tensors (checking every
 * tensor's name, dtype and shape), loading a model folder, per-worker contexts, and the
 * batched forward pass: bottom MLP -> pooled lookups -> interaction -> top MLP -> sigmoid.
 *
 * A run is one parallel region on the context's pool (see task_decode for its two orders).
 * Every task writes disjoint rows of preallocated scratch: no locks, no allocation. */
#include "dlrm.h"

#include "../base/pool.h"
#include "../kernels/kernels.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct layer {
    int in, out;
    const float *w, *b;
} layer;

struct spine_model {
    spine_model_desc desc; /* desc.tables points at tables */
    spine_table_desc *tables;
    spine_tensors tensors;
    spine_store **stores;
    layer bot[SPINE_MAX_LAYERS], top[SPINE_MAX_LAYERS];
    int max_width; /* widest MLP activation */
};

#define LOOKUP_CHUNK 64 /* rows per lookup task */

void dlrm_tensor_name(char *buf, size_t n, const char *kind, int index, const char *what) {
    snprintf(buf, n, "%s.%d.%s", kind, index, what);
}

static spine_status find_tensor(const spine_tensors *ts, const char *name, spine_dtype dt,
                                int64_t d0, int64_t d1, int ndim, const spine_tensor **out,
                                spine_error *err) {
    const spine_tensor *t = st_find(ts, name);
    if (!t) return spine_fail(err, SPINE_ERR_FORMAT, "missing tensor '%s'", name);
    if (t->dtype != dt)
        return spine_fail(err, SPINE_ERR_FORMAT, "tensor '%s' is %s, expected %s", name,
                          spine_dtype_name(t->dtype), spine_dtype_name(dt));
    if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1)) {
        char got[128] = "", want[64];
        size_t o = 0;
        for (int i = 0; i < t->ndim && o < sizeof got - 24; i++)
            o += (size_t)snprintf(got + o, sizeof got - o, "%s%lld", i ? ", " : "",
                                  (long long)t->shape[i]);
        if (ndim == 2)
            snprintf(want, sizeof want, "%lld, %lld", (long long)d0, (long long)d1);
        else
            snprintf(want, sizeof want, "%lld", (long long)d0);
        return spine_fail(err, SPINE_ERR_FORMAT, "tensor '%s' has shape [%s], expected [%s]", name,
                          got, want);
    }
    *out = t;
    return SPINE_OK;
}

static spine_status bind_mlp(const spine_tensors *ts, const char *kind, int in, const int *widths,
                             int n, layer *out, int *maxw, spine_error *err) {
    for (int i = 0; i < n; i++) {
        char name[64];
        const spine_tensor *w, *b;
        dlrm_tensor_name(name, sizeof name, kind, 2 * i, "weight");
        spine_status st = find_tensor(ts, name, SPINE_DT_F32, widths[i], in, 2, &w, err);
        if (st) return st;
        dlrm_tensor_name(name, sizeof name, kind, 2 * i, "bias");
        st = find_tensor(ts, name, SPINE_DT_F32, widths[i], 0, 1, &b, err);
        if (st) return st;
        out[i] = (layer){in, widths[i], w->data, b->data};
        if (widths[i] > *maxw) *maxw = widths[i];
        in = widths[i];
    }
    return SPINE_OK;
}

void spine_model_free(spine_model *m) {
    if (!m) return;
    if (m->stores)
        for (int t = 0; t < m->desc.num_tables; t++) spine_store_free(m->stores[t]);
    free(m->stores);
    free(m->tables);
    st_free(&m->tensors);
    free(m);
}

#define HUGE_MIN_TABLE ((size_t)2 << 20) /* smaller tables sit in caches; a huge page is waste */

/* Move tables onto 2 MiB pages when asked to (AUTO: when they fit in half of what is free). */
static spine_status place_tables(spine_model *m, spine_placement placement, spine_error *err) {
    uint64_t to_copy = 0;
    for (size_t i = 0; i < m->tensors.n; i++)
        if (strncmp(m->tensors.t[i].name, "emb_l.", 6) == 0 && !m->tensors.t[i].owned_huge &&
            m->tensors.t[i].nbytes >= HUGE_MIN_TABLE)
            to_copy += m->tensors.t[i].nbytes;
    if (placement == SPINE_PLACE_AUTO) {
        int64_t avail = spine_mem_available();
        placement =
            avail > 0 && to_copy <= (uint64_t)avail / 2 ? SPINE_PLACE_HUGE : SPINE_PLACE_MAP;
    }
    for (size_t i = 0; i < m->tensors.n; i++) {
        spine_tensor *t = &m->tensors.t[i];
        if (strncmp(t->name, "emb_l.", 6) != 0) continue;
        if (placement == SPINE_PLACE_HUGE && t->nbytes >= HUGE_MIN_TABLE) {
            spine_status st = st_move_to_huge(&m->tensors, t, err);
            if (st) return st;
        }
        if (t->owned_huge) m->desc.emb_bytes_huge += t->nbytes;
    }
    return SPINE_OK;
}

spine_status dlrm_model_create(dlrm_config *cfg, spine_tensors *ts, spine_placement placement,
                               spine_model **out, spine_error *err) {
    *out = NULL;
    dense_init();
    spine_model *m = calloc(1, sizeof *m);
    if (!m) {
        dlrm_config_free(cfg);
        st_free(ts);
        return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    }
    m->desc = *cfg;
    m->tables = (spine_table_desc *)cfg->tables;
    m->desc.tables = m->tables;
    cfg->tables = NULL;
    m->tensors = *ts;
    memset(ts, 0, sizeof *ts);
    const spine_model_desc *d = &m->desc;
    spine_status st = SPINE_OK;
    size_t expected = 2 * (size_t)(d->n_bottom + d->n_top) + (size_t)d->num_tables;
    m->max_width = 1;
    st = bind_mlp(&m->tensors, "bot_l", d->num_dense, d->bottom, d->n_bottom, m->bot, &m->max_width,
                  err);
    if (!st)
        st = bind_mlp(&m->tensors, "top_l", d->interaction_dim, d->top, d->n_top, m->top,
                      &m->max_width, err);
    if (!st) st = place_tables(m, placement, err);
    if (!st && !(m->stores = calloc((size_t)d->num_tables, sizeof *m->stores)))
        st = spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    for (int t = 0; !st && t < d->num_tables; t++) {
        const spine_table_desc *td = &m->tables[t];
        char name[64];
        dlrm_tensor_name(name, sizeof name, "emb_l", t, "weight");
        const spine_tensor *w;
        switch (td->rowtype) {
        case SPINE_ROW_F32:
            st = find_tensor(&m->tensors, name, SPINE_DT_F32, td->rows, d->emb_dim, 2, &w, err);
            break;
        case SPINE_ROW_F16:
            st = find_tensor(&m->tensors, name, SPINE_DT_F16, td->rows, d->emb_dim, 2, &w, err);
            break;
        default:
            st = find_tensor(&m->tensors, name, SPINE_DT_U8, td->rows,
                             (int64_t)spine_row_bytes(td->rowtype, d->emb_dim), 2, &w, err);
        }
        if (!st)
            st = spine_store_mem_create(td->name, w->data, td->rows, d->emb_dim, td->rowtype,
                                        &m->stores[t], err);
    }
    if (!st && m->tensors.n != expected) {
        for (size_t i = 0; i < m->tensors.n; i++) {
            const char *nm = m->tensors.t[i].name;
            bool known = false;
            int idx;
            char kind[8], what[8], rebuilt[64];
            if (sscanf(nm, "%7[a-z_].%d.%7s", kind, &idx, what) == 3 && idx >= 0) {
                snprintf(rebuilt, sizeof rebuilt, "%s.%d.%s", kind, idx, what);
                known = strcmp(rebuilt, nm) == 0 &&
                        ((strcmp(kind, "emb_l") == 0 && idx < d->num_tables &&
                          strcmp(what, "weight") == 0) ||
                         (strcmp(kind, "bot_l") == 0 && idx % 2 == 0 && idx / 2 < d->n_bottom) ||
                         (strcmp(kind, "top_l") == 0 && idx % 2 == 0 && idx / 2 < d->n_top));
            }
            if (!known) {
                st = spine_fail(err, SPINE_ERR_FORMAT, "unexpected tensor '%s'", nm);
                break;
            }
        }
        if (!st) st = spine_fail(err, SPINE_ERR_FORMAT, "unexpected extra tensors");
    }
    if (st) {
        spine_model_free(m);
        return st;
    }
    *out = m;
    return SPINE_OK;
}

spine_status spine_model_load(const char *dir, spine_model **out, spine_error *err) {
    return spine_model_load_opts(dir, NULL, out, err);
}

spine_status spine_model_load_opts(const char *dir, const spine_load_opts *opts, spine_model **out,
                                   spine_error *err) {
    *out = NULL;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
        return spine_fail(err, SPINE_ERR_INVALID, "model path too long");
    char *text;
    size_t len;
    spine_status st = spine_read_file(path, DLRM_MAX_CONFIG_BYTES, &text, &len, err);
    if (st) return st;
    dlrm_config cfg;
    st = dlrm_config_parse(text, len, &cfg, err);
    free(text);
    if (st) {
        spine_error_prefix(err, "%s: ", path);
        return st;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    spine_tensors ts;
    st = st_open(path, &ts, err);
    if (st) {
        dlrm_config_free(&cfg);
        return st;
    }
    st = dlrm_model_create(&cfg, &ts, opts ? opts->placement : SPINE_PLACE_AUTO, out, err);
    if (st) spine_error_prefix(err, "%s: ", path);
    return st;
}

typedef struct hot_cand {
    uint32_t count;
    int32_t table;
    int64_t row;
} hot_cand;

static int cmp_cand(const void *a, const void *b) {
    const hot_cand *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    if (x->table != y->table) return x->table < y->table ? -1 : 1;
    return x->row < y->row ? -1 : x->row > y->row;
}

spine_status dlrm_hot_lists(const spine_model_desc *d, uint32_t *const *counts, size_t budget_bytes,
                            int64_t **lists, size_t *per, spine_error *err) {
    size_t n = 0;
    for (int t = 0; t < d->num_tables; t++) {
        lists[t] = NULL;
        per[t] = 0;
        for (int64_t r = 0; r < d->tables[t].rows; r++) n += counts[t][r] >= 2;
    }
    hot_cand *c = malloc((n ? n : 1) * sizeof *c);
    spine_status st = SPINE_OK;
    if (!c) return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    size_t k = 0;
    for (int t = 0; t < d->num_tables; t++)
        for (int64_t r = 0; r < d->tables[t].rows; r++)
            if (counts[t][r] >= 2) c[k++] = (hot_cand){counts[t][r], t, r};
    qsort(c, n, sizeof *c, cmp_cand);
    size_t used = 0, take = 0;
    for (; take < n; take++) {
        size_t rb = spine_row_bytes(d->tables[c[take].table].rowtype, d->emb_dim);
        if (used + rb > budget_bytes) break;
        used += rb;
        per[c[take].table]++;
    }
    for (int t = 0; t < d->num_tables; t++)
        if (per[t] && !(lists[t] = malloc(per[t] * sizeof **lists))) {
            st = spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
            goto out;
        }
    memset(per, 0, (size_t)d->num_tables * sizeof *per);
    for (size_t i = 0; i < take; i++) lists[c[i].table][per[c[i].table]++] = c[i].row;
out:
    if (st)
        for (int t = 0; t < d->num_tables; t++) {
            free(lists[t]);
            lists[t] = NULL;
            per[t] = 0;
        }
    free(c);
    return st;
}

spine_status dlrm_model_set_hot(spine_model *m, uint32_t *const *counts, size_t budget_bytes,
                                spine_error *err) {
    const spine_model_desc *d = &m->desc;
    size_t *per = calloc((size_t)d->num_tables, sizeof *per);
    int64_t **lists = calloc((size_t)d->num_tables, sizeof *lists);
    spine_status st = !per || !lists ? spine_fail(err, SPINE_ERR_NOMEM, "out of memory")
                                     : dlrm_hot_lists(d, counts, budget_bytes, lists, per, err);
    for (int t = 0; t < d->num_tables && !st; t++) {
        if (!per[t]) continue; /* nothing hot here: the plain store, without the per-row check */
        spine_store *old = m->stores[t], *hs;
        char name[64];
        dlrm_tensor_name(name, sizeof name, "emb_l", t, "weight");
        const spine_tensor *w = st_find(&m->tensors, name);
        st = spine_store_hot_create(old->name, w->data, old->rows, old->dim, old->rowtype, lists[t],
                                    per[t], (size_t)-1, &hs, err);
        if (!st) {
            m->stores[t] = hs;
            spine_store_free(old);
        }
    }
    if (lists)
        for (int t = 0; t < d->num_tables; t++) free(lists[t]);
    free(lists);
    free(per);
    return st;
}

const spine_model_desc *spine_model_describe(const spine_model *m) {
    return &m->desc;
}

spine_store *spine_model_store(const spine_model *m, int t) {
    return t >= 0 && t < m->desc.num_tables ? m->stores[t] : NULL;
}

spine_status spine_batch_validate(const spine_model *m, const spine_batch *b, int64_t nvalues,
                                  spine_error *err) {
    const spine_model_desc *d = &m->desc;
    if (b->batch < 0) return spine_fail(err, SPINE_ERR_INVALID, "negative batch size");
    if (b->batch == 0)
        return nvalues == 0 ? SPINE_OK
                            : spine_fail(err, SPINE_ERR_INVALID, "an empty batch with %lld values",
                                         (long long)nvalues);
    if (!b->dense || !b->lengths || (nvalues > 0 && !b->values))
        return spine_fail(err, SPINE_ERR_INVALID, "batch is missing dense, lengths or values");
    int64_t total = 0;
    for (int t = 0; t < d->num_tables; t++) {
        int64_t tsum = 0;
        for (int32_t i = 0; i < b->batch; i++) {
            int32_t l = b->lengths[(size_t)t * (size_t)b->batch + (size_t)i];
            if (l < 0)
                return spine_fail(err, SPINE_ERR_INVALID, "lengths[%d][%d] = %d is negative", t, i,
                                  l);
            tsum += l;
        }
        if (b->weights && tsum > 0 && m->tables[t].pooling == SPINE_POOL_MEAN)
            return spine_fail(err, SPINE_ERR_INVALID,
                              "table '%s' uses mean pooling: per-value weights need sum pooling",
                              m->tables[t].name);
        total += tsum;
    }
    if (total != nvalues)
        return spine_fail(err, SPINE_ERR_INVALID, "lengths sum to %lld but %lld values were given",
                          (long long)total, (long long)nvalues);
    return SPINE_OK;
}

/* ---- contexts and the forward pass ---- */

struct spine_ctx {
    const spine_model *m;
    spine_pool *pool;
    int max_batch;
    spine_schedule schedule;
    int tgroup, ngroups; /* tables per lookup task, and lookup tasks per chunk */
    float *act[2];       /* MLP ping-pong, max_batch x max_width */
    float *feat;         /* dot: max_batch x F x dim */
    float *inter;        /* max_batch x interaction_dim */
    int64_t *offsets;    /* num_tables x (max_batch + 1) */
    int64_t *cursor;     /* num_tables: where the chunk's values start */
    /* the chunk in flight */
    const spine_batch *b;
    int32_t b0, n;
    int nchunks;
    atomic_int *pending; /* per chunk: body tasks not yet done */
    float *out;
    unsigned flags;
    atomic_int failed;
    spine_error err;
};

void spine_ctx_free(spine_ctx *c) {
    if (!c) return;
    spine_free_aligned(c->act[0]);
    spine_free_aligned(c->act[1]);
    spine_free_aligned(c->feat);
    spine_free_aligned(c->inter);
    free(c->offsets);
    free(c->cursor);
    free(c->pending);
    free(c);
}

void spine_ctx_set_schedule(spine_ctx *c, spine_schedule s) {
    c->schedule = s == SPINE_SCHED_SAMPLE ? SPINE_SCHED_SAMPLE : SPINE_SCHED_TABLE;
}

#define MAX_TABLE_GROUP 32

void spine_ctx_set_table_group(spine_ctx *c, int g) {
    const int T = c->m->desc.num_tables;
    if (g <= 0) g = T / (2 * spine_pool_size(c->pool));
    c->tgroup = SPINE_MAX(1, SPINE_MIN(SPINE_MIN(g, T), MAX_TABLE_GROUP));
    c->ngroups = (T + c->tgroup - 1) / c->tgroup;
}

static void *alloc_floats(size_t a, size_t b, size_t c, bool *ok) {
    size_t n;
    if (!spine_mul_size(a, b, &n) || !spine_mul_size(n, c, &n) || !spine_mul_size(n, 4, &n)) {
        *ok = false;
        return NULL;
    }
    void *p = spine_alloc_aligned(n ? n : 64);
    if (!p) *ok = false;
    return p;
}

spine_status spine_ctx_create(const spine_model *m, int max_batch, spine_pool *pool,
                              spine_ctx **out, spine_error *err) {
    *out = NULL;
    if (max_batch < 1 || max_batch > (1 << 20))
        return spine_fail(err, SPINE_ERR_INVALID, "max_batch %d outside 1..1048576", max_batch);
    const spine_model_desc *d = &m->desc;
    spine_ctx *c = calloc(1, sizeof *c);
    if (!c) return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    c->m = m;
    c->pool = pool;
    c->max_batch = max_batch;
    bool ok = true;
    size_t mb = (size_t)max_batch;
    c->act[0] = alloc_floats(mb, (size_t)m->max_width, 1, &ok);
    c->act[1] = alloc_floats(mb, (size_t)m->max_width, 1, &ok);
    if (d->interaction == SPINE_INTERACT_DOT)
        c->feat = alloc_floats(mb, (size_t)d->num_tables + 1, (size_t)d->emb_dim, &ok);
    c->inter = alloc_floats(mb, (size_t)d->interaction_dim, 1, &ok);
    c->offsets = calloc((size_t)d->num_tables * (mb + 1), sizeof *c->offsets);
    c->cursor = calloc((size_t)d->num_tables, sizeof *c->cursor);
    c->pending = calloc(mb / LOOKUP_CHUNK + 1, sizeof *c->pending);
    if (!ok || !c->offsets || !c->cursor || !c->pending) {
        spine_ctx_free(c);
        return spine_fail(err, SPINE_ERR_NOMEM, "cannot allocate scratch for batch %d", max_batch);
    }
    spine_ctx_set_table_group(c, 0);
    *out = c;
    return SPINE_OK;
}

static void run_mlp(const layer *ls, int nl, int32_t rows, const float *x, int ldx, float *act0,
                    float *act1, int ldact, float *y, int ldy, bool last_relu) {
    const float *in = x;
    int ldin = ldx;
    for (int i = 0; i < nl; i++) {
        bool last = i == nl - 1;
        float *o = last ? y : (i % 2 ? act1 : act0);
        int ldo = last ? ldy : ldact;
        dense_linear(rows, ls[i].out, ls[i].in, in, ldin, ls[i].w, ls[i].b, o, ldo,
                     (!last || last_relu) ? ACT_RELU : ACT_NONE);
        in = o;
        ldin = ldo;
    }
}

/* A run is one parallel region. Each chunk of LOOKUP_CHUNK rows has a bottom-MLP task, one
 * lookup task per group of tables (one multi-table kernel call), and a head task (interaction +
 * top MLP) that depends on the others through a per-chunk counter. The tasks a head waits on
 * never wait themselves, and are handed out before it, so the region cannot deadlock. Two
 * orders:
 *   TABLE:  bottom(all chunks), lookups group by group (each group's chunks back to back),
 *           heads. One group's rows are gathered together: its cache and TLB footprint is
 *           shared by every thread at once.
 *   SAMPLE: bottom(0), lookups(0), bottom(1), lookups(1), head(0), bottom(2), ...: head(c)
 *           lags a chunk, so dense compute overlaps the next chunk's lookups. */
typedef enum task_kind { TASK_BOTTOM, TASK_LOOKUP, TASK_HEAD } task_kind;

static void chunk_rows(const spine_ctx *c, int ch, int32_t *r0, int32_t *r1) {
    *r0 = ch * LOOKUP_CHUNK;
    *r1 = SPINE_MIN(c->n, *r0 + LOOKUP_CHUNK);
}

/* t: for a lookup task, its group of tables */
static void task_decode(const spine_ctx *c, int task, task_kind *kind, int *ch, int *t) {
    const int T = c->ngroups, nc = c->nchunks;
    if (c->schedule == SPINE_SCHED_TABLE) {
        if (task < nc) {
            *kind = TASK_BOTTOM;
            *ch = task;
        } else if (task < nc + T * nc) {
            *kind = TASK_LOOKUP;
            *t = (task - nc) / nc;
            *ch = (task - nc) % nc;
        } else {
            *kind = TASK_HEAD;
            *ch = task - nc - T * nc;
        }
        return;
    }
    const int body = T + 1, step = body + 1;
    if (task < body) { /* body(0) */
        *ch = 0;
        *kind = task == 0 ? TASK_BOTTOM : TASK_LOOKUP;
        *t = task - 1;
        return;
    }
    int rest = task - body, k = 1 + rest / step, j = rest % step;
    if (k >= nc) { /* the final head */
        *kind = TASK_HEAD;
        *ch = nc - 1;
    } else if (j == body) { /* head(k-1) after body(k) */
        *kind = TASK_HEAD;
        *ch = k - 1;
    } else {
        *ch = k;
        *kind = j == 0 ? TASK_BOTTOM : TASK_LOOKUP;
        *t = j - 1;
    }
}

static void fail_task(spine_ctx *c, const spine_error *e) {
    int expected = 0;
    if (atomic_compare_exchange_strong(&c->failed, &expected, 1)) c->err = *e;
}

static void run_task(void *arg, int task, int thread) {
    (void)thread;
    spine_ctx *c = arg;
    const spine_model *m = c->m;
    const spine_model_desc *d = &m->desc;
    const bool dot = d->interaction == SPINE_INTERACT_DOT;
    const size_t fstride =
        dot ? (size_t)(d->num_tables + 1) * (size_t)d->emb_dim : (size_t)d->interaction_dim;
    float *dst = dot ? c->feat : c->inter;
    const size_t mw = (size_t)m->max_width;
    task_kind kind;
    int ch, t = 0;
    task_decode(c, task, &kind, &ch, &t);
    int32_t r0, r1;
    chunk_rows(c, ch, &r0, &r1);
    if (kind == TASK_BOTTOM) {
        run_mlp(m->bot, d->n_bottom, r1 - r0, c->b->dense + (size_t)(c->b0 + r0) * d->num_dense,
                d->num_dense, c->act[0] + r0 * mw, c->act[1] + r0 * mw, (int)mw,
                dst + (size_t)r0 * fstride, (int)fstride, true);
        atomic_fetch_sub_explicit(&c->pending[ch], 1, memory_order_release);
        return;
    }
    if (kind == TASK_LOOKUP) { /* tables [t0, t1) in one multi-table call */
        const int t0 = t * c->tgroup, t1 = SPINE_MIN(d->num_tables, t0 + c->tgroup);
        spine_bags bags[MAX_TABLE_GROUP];
        for (int k = t0; k < t1; k++) {
            size_t col = dot ? (size_t)(k + 1) * (size_t)d->emb_dim
                             : (size_t)d->bottom[d->n_bottom - 1] + (size_t)k * (size_t)d->emb_dim;
            bags[k - t0] = (spine_bags){
                .nbags = r1 - r0,
                .offsets = c->offsets + (size_t)k * (size_t)(c->max_batch + 1) + r0,
                .indices = c->b->values,
                .weights = c->b->weights,
                .pooling = m->tables[k].pooling,
                .out = dst + (size_t)r0 * fstride + col,
                .out_stride = fstride,
            };
        }
        spine_error e;
        if (spine_store_lookup_many(m->stores + t0, bags, t1 - t0, &e) != SPINE_OK)
            fail_task(c, &e);
        atomic_fetch_sub_explicit(&c->pending[ch], 1, memory_order_release);
        return;
    }
    /* head: wait for the chunk's body (normally long finished), then interaction + top MLP */
    unsigned n = 0;
    while (atomic_load_explicit(&c->pending[ch], memory_order_acquire) > 0) spine_wait_step(&n);
    if (atomic_load_explicit(&c->failed, memory_order_relaxed)) return;
    const size_t idim = (size_t)d->interaction_dim;
    if (dot) {
        const int nf = d->num_tables + 1, dim = d->emb_dim;
        for (int32_t r = r0; r < r1; r++) {
            const float *f = c->feat + (size_t)r * (size_t)nf * (size_t)dim;
            float *o = c->inter + (size_t)r * idim;
            memcpy(o, f, (size_t)dim * sizeof *o);
            dense_dot_interact(f, nf, dim, d->interaction_self, o + dim);
        }
    }
    float *y = c->out + c->b0 + r0;
    run_mlp(m->top, d->n_top, r1 - r0, c->inter + (size_t)r0 * idim, (int)idim, c->act[0] + r0 * mw,
            c->act[1] + r0 * mw, (int)mw, y, 1, false);
    if (!(c->flags & SPINE_RUN_LOGITS))
        for (int32_t r = 0; r < r1 - r0; r++) y[r] = dense_sigmoid(y[r]);
}

spine_status spine_ctx_run(spine_ctx *c, const spine_batch *b, float *out, unsigned flags,
                           spine_error *err) {
    const spine_model_desc *d = &c->m->desc;
    if (b->batch < 0 || (b->batch > 0 && (!b->dense || !b->lengths || !out)))
        return spine_fail(err, SPINE_ERR_INVALID, "malformed batch");
    /* where each table's values start (table-major KJT layout) */
    const size_t B = (size_t)b->batch;
    int64_t start = 0;
    for (int t = 0; t < d->num_tables; t++) {
        c->cursor[t] = start;
        for (size_t i = 0; i < B; i++) {
            int32_t l = b->lengths[(size_t)t * B + i];
            if (l < 0)
                return spine_fail(err, SPINE_ERR_INVALID, "lengths[%d][%zu] = %d is negative", t, i,
                                  l);
            start += l;
        }
    }
    if (start > 0 && !b->values) return spine_fail(err, SPINE_ERR_INVALID, "no values");
    c->b = b;
    c->out = out;
    c->flags = flags;
    for (int32_t b0 = 0; b0 < b->batch; b0 += c->max_batch) {
        int32_t n = SPINE_MIN(b->batch - b0, c->max_batch);
        c->b0 = b0;
        c->n = n;
        c->nchunks = (n + LOOKUP_CHUNK - 1) / LOOKUP_CHUNK;
        for (int t = 0; t < d->num_tables; t++) {
            int64_t *off = c->offsets + (size_t)t * (size_t)(c->max_batch + 1);
            const int32_t *len = b->lengths + (size_t)t * B + (size_t)b0;
            int64_t o = c->cursor[t];
            for (int32_t i = 0; i < n; i++) {
                off[i] = o;
                o += len[i];
            }
            off[n] = o;
            c->cursor[t] = o;
        }
        for (int ch = 0; ch < c->nchunks; ch++)
            atomic_store_explicit(&c->pending[ch], c->ngroups + 1, memory_order_relaxed);
        atomic_store(&c->failed, 0);
        spine_pool_run(c->pool, c->nchunks * (c->ngroups + 2), run_task, c);
        if (atomic_load(&c->failed)) {
            if (err) *err = c->err;
            return c->err.code;
        }
    }
    return SPINE_OK;
}
