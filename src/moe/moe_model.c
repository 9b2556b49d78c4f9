/* moe_model.c: binding a MoE transformer to its weights: Hugging Face Mixtral tensor names in
 * one safetensors file or in shards listed by model.safetensors.index.json, with every shape
 * and dtype checked against config.json and every tensor accounted for. */
#include "moe.h"

#include "../base/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define HUGE_MIN_TENSOR ((size_t)1 << 20)

typedef struct binder {
    moe_model *m;
    size_t bound;
    bool panels; /* lay weight matrices out in panels (mm_pack) */
    spine_error *err;
} binder;

/* the tensor named so, and the file holding it */
static spine_tensor *find(moe_model *m, const char *name, spine_tensors **file) {
    for (int f = 0; f < m->nfiles; f++) {
        const spine_tensor *t = st_find(&m->files[f], name);
        if (t) {
            *file = &m->files[f];
            return &m->files[f].t[t - m->files[f].t];
        }
    }
    return NULL;
}

static spine_status get_tensor(binder *b, const char *name, int64_t d0, int64_t d1,
                               spine_tensor **out, spine_tensors **file) {
    spine_tensors *ts;
    spine_tensor *t = find(b->m, name, &ts);
    if (!t) return spine_fail(b->err, SPINE_ERR_FORMAT, "missing tensor '%s'", name);
    if (t->dtype != SPINE_DT_F32 && t->dtype != SPINE_DT_BF16)
        return spine_fail(b->err, SPINE_ERR_UNSUPPORTED, "tensor '%s': dtype %s (F32 or BF16 only)",
                          name, spine_dtype_name(t->dtype));
    bool ok = d1 < 0 ? (t->ndim == 1 && t->shape[0] == d0)
                     : (t->ndim == 2 && t->shape[0] == d0 && t->shape[1] == d1);
    if (!ok) {
        if (d1 < 0)
            return spine_fail(b->err, SPINE_ERR_FORMAT,
                              "tensor '%s': shape does not match config.json (expected [%lld])",
                              name, (long long)d0);
        return spine_fail(b->err, SPINE_ERR_FORMAT,
                          "tensor '%s': shape does not match config.json (expected [%lld, %lld])",
                          name, (long long)d0, (long long)d1);
    }
    b->bound++;
    b->m->params += (uint64_t)(d1 < 0 ? d0 : d0 * d1);
    b->m->weight_bytes += t->nbytes;
    *out = t;
    if (file) *file = ts;
    return SPINE_OK;
}

/* a weight matrix; in panels when the binder lays them out so and `product` (it is a weight of
 * products, not a table of rows such as the embedding) */
static spine_status get_matrix(binder *b, const char *name, int n, int k, mm_weight *w,
                               bool product) {
    spine_tensor *t;
    spine_tensors *ts;
    spine_status st = get_tensor(b, name, n, k, &t, &ts);
    if (st) return st;
    *w = (mm_weight){t->data, t->dtype, n, k, false};
    if (!b->panels || !product) return SPINE_OK;
    /* its own writable copy (small ones off 2 MiB pages), then re-laid in place */
    if (!t->owned) st = st_move_to_owned(ts, t, t->nbytes >= HUGE_MIN_TENSOR, b->err);
    if (st) return st;
    w->data = t->data;
    return mm_pack(w, b->err);
}

static spine_status get_norm(binder *b, const char *name, int n, float **out) {
    spine_tensor *t;
    spine_status st = get_tensor(b, name, n, -1, &t, NULL);
    if (st) return st;
    float *v = spine_alloc_aligned((size_t)n * sizeof(float));
    if (!v) return spine_fail(b->err, SPINE_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++)
        v[i] = t->dtype == SPINE_DT_F32 ? ((const float *)t->data)[i]
                                        : spine_bf16_to_f32(((const uint16_t *)t->data)[i]);
    *out = v;
    return SPINE_OK;
}

static spine_status bind(moe_model *m, bool panels, spine_error *err) {
    const moe_config *c = &m->c;
    binder b = {m, 0, panels, err};
    char nm[256];
    int H = c->hidden, qd = c->heads * c->head_dim, kvd = c->kv_heads * c->head_dim;
    spine_status st = get_matrix(&b, "model.embed_tokens.weight", c->vocab, H, &m->embed, false);
    if (!st) st = get_norm(&b, "model.norm.weight", H, &m->norm);
    if (!st) {
        if (c->tie_embeddings)
            m->lm_head = m->embed;
        else
            st = get_matrix(&b, "lm_head.weight", c->vocab, H, &m->lm_head, true);
    }
    m->layers = calloc((size_t)c->layers, sizeof *m->layers);
    if (!m->layers) return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    for (int i = 0; i < c->layers && !st; i++) {
        moe_layer *L = &m->layers[i];
#define P(fmt, ...) (snprintf(nm, sizeof nm, "model.layers.%d." fmt, i, ##__VA_ARGS__), nm)
        st = get_norm(&b, P("input_layernorm.weight"), H, &L->ln1);
        if (!st) st = get_norm(&b, P("post_attention_layernorm.weight"), H, &L->ln2);
        if (!st) st = get_matrix(&b, P("self_attn.q_proj.weight"), qd, H, &L->q, true);
        if (!st) st = get_matrix(&b, P("self_attn.k_proj.weight"), kvd, H, &L->k, true);
        if (!st) st = get_matrix(&b, P("self_attn.v_proj.weight"), kvd, H, &L->v, true);
        if (!st) st = get_matrix(&b, P("self_attn.o_proj.weight"), H, qd, &L->o, true);
        L->is_moe = moe_layer_is_moe(c, i);
        int ne = L->is_moe ? c->experts : 1;
        L->experts = calloc((size_t)ne, sizeof *L->experts);
        if (!L->experts) return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
        if (L->is_moe) {
            if (!st)
                st = get_matrix(&b, P("block_sparse_moe.gate.weight"), c->experts, H, &L->gate,
                                true);
            for (int e = 0; e < ne && !st; e++) {
                moe_ffn *f = &L->experts[e];
                st = get_matrix(&b, P("block_sparse_moe.experts.%d.w1.weight", e), c->inter, H,
                                &f->w1, true);
                if (!st)
                    st = get_matrix(&b, P("block_sparse_moe.experts.%d.w2.weight", e), H, c->inter,
                                    &f->w2, true);
                if (!st)
                    st = get_matrix(&b, P("block_sparse_moe.experts.%d.w3.weight", e), c->inter, H,
                                    &f->w3, true);
                if (!st) m->expert_bytes += 3ull * c->inter * H * spine_dtype_size(f->w1.dt);
            }
        } else {
            moe_ffn *f = &L->experts[0];
            if (!st) st = get_matrix(&b, P("mlp.gate_proj.weight"), c->inter, H, &f->w1, true);
            if (!st) st = get_matrix(&b, P("mlp.down_proj.weight"), H, c->inter, &f->w2, true);
            if (!st) st = get_matrix(&b, P("mlp.up_proj.weight"), c->inter, H, &f->w3, true);
        }
#undef P
    }
    if (st) return st;
    size_t total = 0;
    for (int f = 0; f < m->nfiles; f++) total += m->files[f].n;
    if (b.bound != total) {
        return spine_fail(err, SPINE_ERR_FORMAT,
                          "the weights hold %zu tensors but config.json describes %zu: layers, "
                          "experts or moe_every do not match",
                          total, b.bound);
    }
    for (int i = 0; i < c->head_dim / 2; i++)
        m->rope_inv_freq[i] = 1.0 / pow(c->rope_theta, (double)(2 * i) / c->head_dim);
    return SPINE_OK;
}

void moe_model_free(moe_model *m) {
    if (!m) return;
    if (m->layers) {
        for (int i = 0; i < m->c.layers; i++) {
            spine_free_aligned(m->layers[i].ln1);
            spine_free_aligned(m->layers[i].ln2);
            free(m->layers[i].experts);
        }
        free(m->layers);
    }
    spine_free_aligned(m->norm);
    for (int f = 0; f < m->nfiles; f++) st_free(&m->files[f]);
    free(m->files);
    free(m);
}

spine_status moe_model_create(const moe_config *c, spine_tensors *ts, moe_model **out,
                              spine_error *err) {
    moe_model *m = calloc(1, sizeof *m);
    spine_tensors *files = calloc(1, sizeof *files);
    if (!m || !files) {
        free(m);
        free(files);
        st_free(ts);
        return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    }
    m->c = *c;
    m->files = files;
    m->nfiles = 1;
    files[0] = *ts;
    memset(ts, 0, sizeof *ts);
    m->panels = mm_wants_panels(); /* the tensors are in memory */
    spine_status st = bind(m, m->panels, err);
    if (st) {
        moe_model_free(m);
        return st;
    }
    *out = m;
    return SPINE_OK;
}

/* model.safetensors.index.json: {"metadata": {...}, "weight_map": {tensor: shard file}} */
static spine_status open_shards(moe_model *m, const char *dir, spine_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    char *text = NULL;
    size_t len = 0;
    spine_status st = spine_read_file(path, (size_t)64 << 20, &text, &len, err);
    if (st) return st;
    json_doc d;
    st = json_parse_limited(&d, text, len, 4u << 20, err);
    if (st) {
        free(text);
        spine_error_prefix(err, "%s: ", path);
        return st;
    }
    const json_node *wm =
        json_root(&d)->type == JSON_OBJECT ? json_obj_get(&d, json_root(&d), "weight_map") : NULL;
    if (!wm || wm->type != JSON_OBJECT || wm->count == 0) {
        st = spine_fail(err, SPINE_ERR_FORMAT, "%s: no \"weight_map\" object", path);
        goto out;
    }
    /* distinct shard names, in first-seen order */
    const char **names = calloc(wm->count, sizeof *names);
    m->files = calloc(wm->count, sizeof *m->files);
    if (!names || !m->files) {
        free(names);
        st = spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
        goto out;
    }
    int n = 0;
    for (const json_node *k = json_child(&d, wm); k && !st; k = json_next(&d, json_next(&d, k))) {
        const json_node *v = json_next(&d, k);
        if (v->type != JSON_STRING) {
            st =
                spine_fail(err, SPINE_ERR_FORMAT, "%s: weight_map values must be file names", path);
            break;
        }
        const char *f = json_str(&d, v);
        size_t fl = strlen(f);
        if (fl == 0 || fl > 255 || strchr(f, '/') || f[0] == '.' || fl < 12 ||
            strcmp(f + fl - 12, ".safetensors") != 0) {
            st = spine_fail(err, SPINE_ERR_FORMAT,
                            "%s: shard '%s' must be a plain *.safetensors file name", path, f);
            break;
        }
        int j;
        for (j = 0; j < n; j++)
            if (strcmp(names[j], f) == 0) break;
        if (j == n) names[n++] = f;
    }
    for (int j = 0; j < n && !st; j++) {
        char sp[4096 + 256];
        snprintf(sp, sizeof sp, "%s/%s", dir, names[j]);
        st = st_open(sp, &m->files[j], err);
        if (!st) m->nfiles = j + 1;
    }
    /* every tensor must live in the shard the index names */
    for (const json_node *k = json_child(&d, wm); k && !st; k = json_next(&d, json_next(&d, k))) {
        const char *f = json_str(&d, json_next(&d, k));
        for (int j = 0; j < n; j++)
            if (strcmp(names[j], f) == 0 && !st_find(&m->files[j], json_str(&d, k)))
                st = spine_fail(err, SPINE_ERR_FORMAT, "%s: tensor '%s' is not in %s", path,
                                json_str(&d, k), f);
    }
    free(names);
out:
    json_free(&d);
    free(text);
    return st;
}

spine_status moe_model_load(const char *dir, spine_placement placement, moe_model **out,
                            spine_error *err) {
    char path[4096];
    if (strlen(dir) > 3000) return spine_fail(err, SPINE_ERR_INVALID, "model path too long");
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *text = NULL;
    size_t len = 0;
    spine_status st = spine_read_file(path, MOE_MAX_CONFIG_BYTES, &text, &len, err);
    if (st) return st;
    moe_model *m = calloc(1, sizeof *m);
    if (!m) {
        free(text);
        return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    }
    st = moe_config_parse(text, len, &m->c, err);
    free(text);
    if (st) {
        spine_error_prefix(err, "%s: ", dir);
        free(m);
        return st;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *probe = fopen(path, "rb");
    if (probe) {
        fclose(probe);
        m->files = calloc(1, sizeof *m->files);
        if (!m->files) st = spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
        if (!st) st = st_open(path, &m->files[0], err);
        if (!st) m->nfiles = 1;
    } else {
        st = open_shards(m, dir, err);
    }
    if (!st && placement == SPINE_PLACE_AUTO) {
        uint64_t total = 0;
        for (int f = 0; f < m->nfiles; f++) total += m->files[f].map_len;
        int64_t avail = spine_mem_available();
        placement = avail > 0 && total <= (uint64_t)avail / 2 ? SPINE_PLACE_HUGE : SPINE_PLACE_MAP;
    }
    bool huge = placement == SPINE_PLACE_HUGE;
    m->mapped = !huge;
    for (int f = 0; f < m->nfiles && huge && !st; f++)
        for (size_t t = 0; t < m->files[f].n && !st; t++)
            if (m->files[f].t[t].nbytes >= HUGE_MIN_TENSOR)
                st = st_move_to_huge(&m->files[f], &m->files[f].t[t], err);
    /* Panels where the kernels that run here want them (AVX-512), for weights in memory; mapped
     * weights stay as the file lays them out (re-laying them would copy every page). */
    m->panels = huge && mm_wants_panels();
    if (!st) st = bind(m, m->panels, err);
    if (st) {
        spine_error_prefix(err, "%s: ", dir);
        moe_model_free(m);
        return st;
    }
    *out = m;
    return SPINE_OK;
}

double moe_default_slow_gbps(const moe_model *m) {
    return m->mapped ? 0.0 : MOE_DEFAULT_SLOW_GBPS;
}

int moe_slots_for_budget(const moe_model *m, uint64_t budget) {
    const moe_config *c = &m->c;
    uint64_t nmoe = 0;
    for (int i = 0; i < c->layers; i++) nmoe += moe_layer_is_moe(c, i);
    if (!nmoe || c->experts < 1 || !m->expert_bytes) return 0;
    /* a slot holds one expert rounded up to 64 bytes, as moe_tier_init lays them out */
    uint64_t slot = (m->expert_bytes / ((uint64_t)c->experts * nmoe) + 63) / 64 * 64;
    uint64_t one_slot_per_layer = slot * nmoe;
    uint64_t k = one_slot_per_layer ? budget / one_slot_per_layer : 0;
    return (int)SPINE_MIN(k, (uint64_t)c->experts);
}

uint64_t moe_decode_bytes_per_token(const moe_model *m) {
    const moe_config *c = &m->c;
    uint64_t b = 0;
    for (int i = 0; i < c->layers; i++) {
        const moe_layer *L = &m->layers[i];
        const mm_weight *ws[] = {&L->q, &L->k, &L->v, &L->o};
        for (int j = 0; j < 4; j++)
            b += (uint64_t)ws[j]->n * ws[j]->k * spine_dtype_size(ws[j]->dt);
        int used = L->is_moe ? c->top_k : 1;
        if (L->is_moe) b += (uint64_t)L->gate.n * L->gate.k * spine_dtype_size(L->gate.dt);
        const moe_ffn *f = &L->experts[0];
        b += (uint64_t)used * 3 * f->w1.n * f->w1.k * spine_dtype_size(f->w1.dt);
    }
    b += (uint64_t)m->lm_head.n * m->lm_head.k * spine_dtype_size(m->lm_head.dt);
    b += (uint64_t)c->hidden * spine_dtype_size(m->embed.dt); /* one embedding row */
    return b;
}
