/* config.c: DLRM config.json: parsing with full validation, derived fields, and writing.
 * The schema is documented in docs/MODEL_FORMAT.md; unknown keys are errors (a typo must not
 * silently change a model), except inside "metadata", which is free-form. */
#include "dlrm.h"

#include "../base/json.h"

#include <stdio.h>
#include <stdlib.h>

void dlrm_config_free(dlrm_config *c) {
    free((void *)c->tables);
    c->tables = NULL;
}

static spine_status get_widths(const json_doc *d, const json_node *v, const char *key, int *n,
                               int *out, spine_error *err) {
    if (v->type != JSON_ARRAY || v->count == 0 || v->count > SPINE_MAX_LAYERS)
        return spine_fail(err, SPINE_ERR_FORMAT, "\"%s\" must be an array of 1 to %d widths", key,
                          SPINE_MAX_LAYERS);
    *n = 0;
    for (const json_node *e = json_child(d, v); e; e = json_next(d, e)) {
        int64_t w = 0;
        spine_status st = json_get_int_in(d, e, key, 1, DLRM_MAX_WIDTH, &w, err);
        if (st) return st;
        out[(*n)++] = (int)w;
    }
    return SPINE_OK;
}

static spine_status get_rowtype(const json_doc *d, const json_node *v, const char *key,
                                spine_rowtype *out, spine_error *err) {
    if (v->type != JSON_STRING || spine_rowtype_parse(json_str(d, v), out) != 0)
        return spine_fail(err, SPINE_ERR_FORMAT, "\"%s\" must be one of f32, f16, int8, int4", key);
    return SPINE_OK;
}

static spine_status get_pooling(const json_doc *d, const json_node *v, const char *key,
                                spine_pooling *out, spine_error *err) {
    if (v->type == JSON_STRING && strcmp(json_str(d, v), "sum") == 0)
        *out = SPINE_POOL_SUM;
    else if (v->type == JSON_STRING && strcmp(json_str(d, v), "mean") == 0)
        *out = SPINE_POOL_MEAN;
    else
        return spine_fail(err, SPINE_ERR_FORMAT, "\"%s\" must be \"sum\" or \"mean\"", key);
    return SPINE_OK;
}

static spine_status parse_tables(const json_doc *d, const json_node *v, dlrm_config *c,
                                 spine_rowtype dflt_rt, spine_pooling dflt_pool, spine_error *err) {
    if (v->type != JSON_ARRAY || v->count == 0 || v->count > DLRM_MAX_TABLES)
        return spine_fail(err, SPINE_ERR_FORMAT, "\"tables\" must be an array of 1 to %d tables",
                          DLRM_MAX_TABLES);
    spine_table_desc *t = calloc(v->count, sizeof *t);
    if (!t) return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    c->tables = t;
    c->num_tables = (int)v->count;
    int i = 0;
    for (const json_node *e = json_child(d, v); e; e = json_next(d, e), i++) {
        if (e->type != JSON_OBJECT)
            return spine_fail(err, SPINE_ERR_FORMAT, "tables[%d] must be an object", i);
        snprintf(t[i].name, sizeof t[i].name, "emb_l.%d", i);
        t[i].rowtype = dflt_rt;
        t[i].pooling = dflt_pool;
        bool have_rows = false;
        for (const json_node *k = json_child(d, e); k; k = json_next(d, json_next(d, k))) {
            const char *kn = json_str(d, k);
            const json_node *val = json_next(d, k);
            spine_status st = SPINE_OK;
            if (strcmp(kn, "rows") == 0) {
                st = json_get_int_in(d, val, "rows", 1, DLRM_MAX_ROWS, &t[i].rows, err);
                have_rows = true;
            } else if (strcmp(kn, "name") == 0) {
                if (val->type != JSON_STRING || val->len == 0 || val->len >= sizeof t[i].name)
                    st =
                        spine_fail(err, SPINE_ERR_FORMAT, "name must be a string of 1 to %zu bytes",
                                   sizeof t[i].name - 1);
                else
                    memcpy(t[i].name, json_str(d, val), val->len + 1);
            } else if (strcmp(kn, "dtype") == 0) {
                st = get_rowtype(d, val, "dtype", &t[i].rowtype, err);
            } else if (strcmp(kn, "pooling") == 0) {
                st = get_pooling(d, val, "pooling", &t[i].pooling, err);
            } else {
                st = spine_fail(err, SPINE_ERR_FORMAT, "unknown key \"%s\"", kn);
            }
            if (st) {
                spine_error_prefix(err, "tables[%d]: ", i);
                return st;
            }
        }
        if (!have_rows) return spine_fail(err, SPINE_ERR_FORMAT, "tables[%d]: missing \"rows\"", i);
    }
    return SPINE_OK;
}

spine_status dlrm_config_parse(const char *json, size_t len, dlrm_config *c, spine_error *err) {
    memset(c, 0, sizeof *c);
    if (len > DLRM_MAX_CONFIG_BYTES)
        return spine_fail(err, SPINE_ERR_LIMIT, "config of %zu bytes exceeds %zu", len,
                          DLRM_MAX_CONFIG_BYTES);
    json_doc d;
    spine_status st = json_parse(&d, json, len, err);
    if (st) return st;
    const json_node *root = json_root(&d);
    if (root->type != JSON_OBJECT) {
        json_free(&d);
        return spine_fail(err, SPINE_ERR_FORMAT, "config must be a JSON object");
    }
    /* defaults, then two passes: scalars first (table defaults depend on them), then tables */
    spine_rowtype rt = SPINE_ROW_F32;
    spine_pooling pool = SPINE_POOL_SUM;
    c->interaction = SPINE_INTERACT_DOT;
    c->lookups_per_table = 1;
    snprintf(c->name, sizeof c->name, "model");
    bool have_type = false, have_dense = false, have_dim = false, have_bot = false,
         have_top = false;
    const json_node *tables = NULL;
    for (const json_node *k = json_child(&d, root); k && !st; k = json_next(&d, json_next(&d, k))) {
        const char *kn = json_str(&d, k);
        const json_node *v = json_next(&d, k);
        int64_t x = 0;
        if (strcmp(kn, "model_type") == 0) {
            if (v->type != JSON_STRING || strcmp(json_str(&d, v), "dlrm") != 0)
                st = spine_fail(err, SPINE_ERR_UNSUPPORTED, "\"model_type\" must be \"dlrm\"");
            have_type = true;
        } else if (strcmp(kn, "name") == 0) {
            if (v->type != JSON_STRING || v->len == 0 || v->len >= sizeof c->name)
                st = spine_fail(err, SPINE_ERR_FORMAT,
                                "\"name\" must be a string of 1 to %zu bytes", sizeof c->name - 1);
            else
                memcpy(c->name, json_str(&d, v), v->len + 1);
        } else if (strcmp(kn, "num_dense_features") == 0) {
            if (!(st = json_get_int_in(&d, v, kn, 1, DLRM_MAX_WIDTH, &x, err)))
                c->num_dense = (int)x;
            have_dense = true;
        } else if (strcmp(kn, "embedding_dim") == 0) {
            if (!(st = json_get_int_in(&d, v, kn, 1, DLRM_MAX_DIM, &x, err))) c->emb_dim = (int)x;
            have_dim = true;
        } else if (strcmp(kn, "embedding_dtype") == 0) {
            st = get_rowtype(&d, v, kn, &rt, err);
        } else if (strcmp(kn, "pooling") == 0) {
            st = get_pooling(&d, v, kn, &pool, err);
        } else if (strcmp(kn, "tables") == 0) {
            tables = v;
        } else if (strcmp(kn, "bottom_mlp") == 0) {
            st = get_widths(&d, v, kn, &c->n_bottom, c->bottom, err);
            have_bot = true;
        } else if (strcmp(kn, "top_mlp") == 0) {
            st = get_widths(&d, v, kn, &c->n_top, c->top, err);
            have_top = true;
        } else if (strcmp(kn, "interaction") == 0) {
            if (v->type == JSON_STRING && strcmp(json_str(&d, v), "dot") == 0)
                c->interaction = SPINE_INTERACT_DOT;
            else if (v->type == JSON_STRING && strcmp(json_str(&d, v), "cat") == 0)
                c->interaction = SPINE_INTERACT_CAT;
            else
                st =
                    spine_fail(err, SPINE_ERR_FORMAT, "\"interaction\" must be \"dot\" or \"cat\"");
        } else if (strcmp(kn, "interaction_self") == 0) {
            if (v->type != JSON_TRUE && v->type != JSON_FALSE)
                st = spine_fail(err, SPINE_ERR_FORMAT, "\"interaction_self\" must be a boolean");
            c->interaction_self = v->type == JSON_TRUE;
        } else if (strcmp(kn, "lookups_per_table") == 0) {
            if (!(st = json_get_int_in(&d, v, kn, 0, 1 << 20, &x, err)))
                c->lookups_per_table = (int)x;
        } else if (strcmp(kn, "metadata") == 0) {
            if (v->type != JSON_OBJECT)
                st = spine_fail(err, SPINE_ERR_FORMAT, "\"metadata\" must be an object");
        } else {
            st = spine_fail(err, SPINE_ERR_FORMAT, "unknown key \"%s\"", kn);
        }
    }
    if (!st && !have_type) st = spine_fail(err, SPINE_ERR_FORMAT, "missing \"model_type\"");
    if (!st && !have_dense)
        st = spine_fail(err, SPINE_ERR_FORMAT, "missing \"num_dense_features\"");
    if (!st && !have_dim) st = spine_fail(err, SPINE_ERR_FORMAT, "missing \"embedding_dim\"");
    if (!st && !have_bot) st = spine_fail(err, SPINE_ERR_FORMAT, "missing \"bottom_mlp\"");
    if (!st && !have_top) st = spine_fail(err, SPINE_ERR_FORMAT, "missing \"top_mlp\"");
    if (!st && !tables) st = spine_fail(err, SPINE_ERR_FORMAT, "missing \"tables\"");
    if (!st) st = parse_tables(&d, tables, c, rt, pool, err);
    json_free(&d);
    if (!st) st = dlrm_config_finish(c, err);
    if (st) dlrm_config_free(c);
    return st;
}

spine_status dlrm_config_finish(dlrm_config *c, spine_error *err) {
    if (c->num_tables < 1 || c->num_tables > DLRM_MAX_TABLES || c->emb_dim < 1 ||
        c->emb_dim > DLRM_MAX_DIM || c->n_bottom < 1 || c->n_top < 1 ||
        c->n_bottom > SPINE_MAX_LAYERS || c->n_top > SPINE_MAX_LAYERS || c->num_dense < 1)
        return spine_fail(err, SPINE_ERR_INVALID, "incomplete configuration");
    int dbot = c->bottom[c->n_bottom - 1];
    uint64_t f = (uint64_t)c->num_tables + 1;
    if (c->interaction == SPINE_INTERACT_DOT) {
        if (dbot != c->emb_dim)
            return spine_fail(err, SPINE_ERR_FORMAT,
                              "dot interaction needs the bottom MLP to end at embedding_dim (%d), "
                              "not %d",
                              c->emb_dim, dbot);
        uint64_t pairs = c->interaction_self ? f * (f + 1) / 2 : f * (f - 1) / 2;
        c->interaction_dim = (int)(dbot + pairs);
    } else {
        c->interaction_dim = (int)(dbot + (uint64_t)c->num_tables * (uint64_t)c->emb_dim);
    }
    if (c->top[c->n_top - 1] != 1)
        return spine_fail(err, SPINE_ERR_FORMAT, "the top MLP must end in 1 output, not %d",
                          c->top[c->n_top - 1]);
    uint64_t mlp = 0, emb = 0, bytes = 0;
    int in = c->num_dense;
    for (int i = 0; i < c->n_bottom; i++) {
        mlp += (uint64_t)in * (uint64_t)c->bottom[i] + (uint64_t)c->bottom[i];
        in = c->bottom[i];
    }
    in = c->interaction_dim;
    for (int i = 0; i < c->n_top; i++) {
        mlp += (uint64_t)in * (uint64_t)c->top[i] + (uint64_t)c->top[i];
        in = c->top[i];
    }
    for (int t = 0; t < c->num_tables; t++) {
        const spine_table_desc *td = &c->tables[t];
        uint64_t p, b;
        if (td->rows < 1 || td->rows > DLRM_MAX_ROWS)
            return spine_fail(err, SPINE_ERR_LIMIT, "table %d: %lld rows", t, (long long)td->rows);
        if (__builtin_mul_overflow((uint64_t)td->rows, (uint64_t)c->emb_dim, &p) ||
            __builtin_add_overflow(emb, p, &emb) ||
            __builtin_mul_overflow((uint64_t)td->rows,
                                   (uint64_t)spine_row_bytes(td->rowtype, c->emb_dim), &b) ||
            __builtin_add_overflow(bytes, b, &bytes) || bytes > ((uint64_t)1 << 46))
            return spine_fail(err, SPINE_ERR_LIMIT, "embedding tables exceed 64 TiB");
        for (int u = 0; u < t; u++)
            if (strcmp(c->tables[u].name, td->name) == 0)
                return spine_fail(err, SPINE_ERR_FORMAT, "two tables are named '%s'", td->name);
    }
    if (c->interaction_dim > (1 << 24))
        return spine_fail(err, SPINE_ERR_LIMIT, "interaction width %d is too large",
                          c->interaction_dim);
    c->mlp_params = mlp;
    c->emb_params = emb;
    c->emb_bytes = bytes;
    return SPINE_OK;
}

static const char *pool_name(spine_pooling p) {
    return p == SPINE_POOL_MEAN ? "mean" : "sum";
}

char *dlrm_config_to_json(const dlrm_config *c) {
    spine_buf b = {0};
    spine_buf_puts(&b, "{\n  \"model_type\": \"dlrm\",\n  \"name\": ");
    json_write_string(&b, c->name, strlen(c->name));
    spine_buf_printf(&b, ",\n  \"num_dense_features\": %d,\n  \"embedding_dim\": %d,\n",
                     c->num_dense, c->emb_dim);
    spine_buf_printf(&b, "  \"embedding_dtype\": \"%s\",\n  \"pooling\": \"%s\",\n",
                     spine_rowtype_name(c->tables[0].rowtype), pool_name(c->tables[0].pooling));
    spine_buf_puts(&b, "  \"bottom_mlp\": [");
    for (int i = 0; i < c->n_bottom; i++) spine_buf_printf(&b, "%s%d", i ? ", " : "", c->bottom[i]);
    spine_buf_puts(&b, "],\n  \"top_mlp\": [");
    for (int i = 0; i < c->n_top; i++) spine_buf_printf(&b, "%s%d", i ? ", " : "", c->top[i]);
    spine_buf_printf(&b, "],\n  \"interaction\": \"%s\",\n  \"interaction_self\": %s,\n",
                     c->interaction == SPINE_INTERACT_DOT ? "dot" : "cat",
                     c->interaction_self ? "true" : "false");
    spine_buf_printf(&b, "  \"lookups_per_table\": %d,\n  \"tables\": [\n", c->lookups_per_table);
    for (int t = 0; t < c->num_tables; t++) {
        const spine_table_desc *td = &c->tables[t];
        spine_buf_puts(&b, "    {\"name\": ");
        json_write_string(&b, td->name, strlen(td->name));
        spine_buf_printf(&b, ", \"rows\": %lld", (long long)td->rows);
        if (td->rowtype != c->tables[0].rowtype)
            spine_buf_printf(&b, ", \"dtype\": \"%s\"", spine_rowtype_name(td->rowtype));
        if (td->pooling != c->tables[0].pooling)
            spine_buf_printf(&b, ", \"pooling\": \"%s\"", pool_name(td->pooling));
        spine_buf_printf(&b, "}%s\n", t + 1 < c->num_tables ? "," : "");
    }
    spine_buf_puts(&b, "  ]\n}\n");
    if (b.failed) {
        spine_buf_free(&b);
        return NULL;
    }
    return b.data;
}
