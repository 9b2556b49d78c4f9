/* protocol.c: decoding and encoding Open Inference Protocol infer messages (see protocol.h). */
#include "protocol.h"

#include "../base/json.h"
#include "../kernels/kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef enum in_kind { IN_DENSE, IN_LENGTHS, IN_VALUES, IN_WEIGHTS, IN_COUNT } in_kind;
static const char *in_names[IN_COUNT] = {"dense", "lengths", "values", "weights"};

typedef enum wire_type { W_FP32, W_INT32, W_INT64, W_OTHER } wire_type;

typedef struct in_desc {
    const json_node *node; /* the input object */
    wire_type type;
    int ndim;
    int64_t shape[4];
    int64_t count;
    const json_node *data; /* JSON data, or NULL for binary */
    const uint8_t *bin;    /* binary data, or NULL */
    size_t bin_size;
} in_desc;

void infer_request_free(infer_request *r) {
    free(r->dense);
    free(r->lengths);
    free(r->values);
    free(r->weights);
    memset(r, 0, sizeof *r);
}

static wire_type parse_type(const char *s) {
    if (strcmp(s, "FP32") == 0) return W_FP32;
    if (strcmp(s, "INT32") == 0) return W_INT32;
    if (strcmp(s, "INT64") == 0) return W_INT64;
    return W_OTHER;
}

static size_t wire_size(wire_type t) {
    return t == W_INT64 ? 8 : 4;
}

/* Count the leaves of (possibly nested) JSON data; -1 when something is not a number. */
static int64_t count_leaves(const json_doc *d, const json_node *n, int depth) {
    if (n->type == JSON_NUMBER) return 1;
    if (n->type != JSON_ARRAY || depth > 8) return -1;
    int64_t c = 0;
    for (const json_node *e = json_child(d, n); e; e = json_next(d, e)) {
        int64_t k = count_leaves(d, e, depth + 1);
        if (k < 0) return -1;
        c += k;
    }
    return c;
}

/* Flatten numbers in row-major order into out (float or int64). Returns false on a
 * non-integer where integers are needed. */
static bool flatten(const json_doc *d, const json_node *n, bool ints, void *out, int64_t *k) {
    if (n->type == JSON_NUMBER) {
        if (ints) {
            int64_t v;
            if (!json_get_i64(d, n, &v)) return false;
            ((int64_t *)out)[(*k)++] = v;
        } else {
            ((float *)out)[(*k)++] = (float)n->num;
        }
        return true;
    }
    for (const json_node *e = json_child(d, n); e; e = json_next(d, e))
        if (!flatten(d, e, ints, out, k)) return false;
    return true;
}

static spine_status bad(spine_error *err, const char *fmt, const char *name) {
    return spine_fail(err, SPINE_ERR_INVALID, fmt, name);
}

/* Read an input's elements into a freshly allocated array of int64 or float. */
static spine_status load(const json_doc *d, const in_desc *in, const char *name, bool ints,
                         void **out, spine_error *err) {
    size_t n = (size_t)in->count;
    void *p = malloc((n ? n : 1) * (ints ? 8 : 4));
    if (!p) return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    if (in->bin) {
        if (ints && in->type == W_INT64)
            memcpy(p, in->bin, n * 8);
        else if (ints) {
            for (size_t i = 0; i < n; i++) {
                int32_t v;
                memcpy(&v, in->bin + 4 * i, 4);
                ((int64_t *)p)[i] = v;
            }
        } else
            memcpy(p, in->bin, n * 4);
    } else {
        int64_t k = 0;
        if (!flatten(d, in->data, ints, p, &k) || k != in->count) {
            free(p);
            return bad(err, "input '%s': data must be integers", name);
        }
    }
    *out = p;
    return SPINE_OK;
}

static spine_status parse_inputs(const json_doc *d, const json_node *inputs, in_desc *ins,
                                 const char *bin, size_t bin_len, spine_error *err) {
    if (!inputs || inputs->type != JSON_ARRAY)
        return spine_fail(err, SPINE_ERR_INVALID, "\"inputs\" must be an array");
    size_t bin_off = 0;
    for (const json_node *in = json_child(d, inputs); in; in = json_next(d, in)) {
        if (in->type != JSON_OBJECT)
            return spine_fail(err, SPINE_ERR_INVALID, "an input is not an object");
        const json_node *nm = json_obj_get(d, in, "name"), *dt = json_obj_get(d, in, "datatype"),
                        *sh = json_obj_get(d, in, "shape"), *data = json_obj_get(d, in, "data"),
                        *params = json_obj_get(d, in, "parameters");
        if (!nm || nm->type != JSON_STRING)
            return spine_fail(err, SPINE_ERR_INVALID, "an input has no \"name\"");
        const char *name = json_str(d, nm);
        int k = -1;
        for (int i = 0; i < IN_COUNT; i++)
            if (strcmp(name, in_names[i]) == 0) k = i;
        if (k < 0)
            return spine_fail(err, SPINE_ERR_INVALID,
                              "unknown input '%.64s' (expected dense, lengths, values, weights)",
                              name);
        in_desc *x = &ins[k];
        if (x->node) return bad(err, "input '%s' given twice", name);
        x->node = in;
        if (!dt || dt->type != JSON_STRING)
            return bad(err, "input '%s': missing \"datatype\"", name);
        x->type = parse_type(json_str(d, dt));
        if (!sh || sh->type != JSON_ARRAY || sh->count < 1 || sh->count > 4)
            return bad(err, "input '%s': \"shape\" must be an array of 1 to 4 sizes", name);
        x->ndim = 0;
        x->count = 1;
        for (const json_node *e = json_child(d, sh); e; e = json_next(d, e)) {
            int64_t v;
            if (!json_get_i64(d, e, &v) || v < 0 || v > ((int64_t)1 << 32))
                return bad(err, "input '%s': shape sizes must be integers in [0, 2^32]", name);
            x->shape[x->ndim++] = v;
            if (__builtin_mul_overflow(x->count, v, &x->count) || x->count > ((int64_t)1 << 32))
                return bad(err, "input '%s': too many elements", name);
        }
        const json_node *bds = params ? json_obj_get(d, params, "binary_data_size") : NULL;
        if (bds) {
            uint64_t sz;
            if (!json_get_u64(d, bds, &sz))
                return bad(err, "input '%s': bad binary_data_size", name);
            if (x->type == W_OTHER) return bad(err, "input '%s': unsupported datatype", name);
            if (sz != (uint64_t)x->count * wire_size(x->type))
                return bad(err, "input '%s': binary_data_size disagrees with shape and datatype",
                           name);
            if (sz > bin_len - bin_off)
                return spine_fail(err, SPINE_ERR_INVALID,
                                  "input '%s': binary data runs past the end of the body", name);
            x->bin = (const uint8_t *)bin + bin_off;
            x->bin_size = (size_t)sz;
            bin_off += (size_t)sz;
            if (data) return bad(err, "input '%s': both \"data\" and binary data", name);
        } else {
            if (!data) return bad(err, "input '%s': no \"data\"", name);
            int64_t leaves = count_leaves(d, data, 0);
            if (leaves < 0) return bad(err, "input '%s': \"data\" must hold only numbers", name);
            if (leaves != x->count)
                return bad(
                    err, "input '%s': \"data\" holds a different number of elements than the shape",
                    name);
            x->data = data;
        }
    }
    if (bin_off != bin_len)
        return spine_fail(err, SPINE_ERR_INVALID, "%zu bytes of binary data that no input claims",
                          bin_len - bin_off);
    return SPINE_OK;
}

spine_status proto_decode_infer(const spine_model *m, const char *body, size_t len, size_t json_len,
                                proto_admit_fn admit, void *admit_arg, infer_request *r,
                                spine_error *err) {
    memset(r, 0, sizeof *r);
    if (json_len > len)
        return spine_fail(err, SPINE_ERR_INVALID,
                          "Inference-Header-Content-Length %zu exceeds the body of %zu bytes",
                          json_len, len);
    size_t jl = json_len ? json_len : len;
    json_doc d;
    spine_status st = json_parse_limited(&d, body, jl, PROTO_MAX_JSON_NODES, err);
    if (st) return st == SPINE_ERR_LIMIT ? st : SPINE_ERR_INVALID;
    const json_node *root = json_root(&d);
    in_desc ins[IN_COUNT] = {{0}};
    const spine_model_desc *md = spine_model_describe(m);
    if (root->type != JSON_OBJECT) {
        st = spine_fail(err, SPINE_ERR_INVALID, "the request must be a JSON object");
        goto out;
    }
    const json_node *id = json_obj_get(&d, root, "id");
    if (id && id->type == JSON_STRING) snprintf(r->id, sizeof r->id, "%s", json_str(&d, id));
    const json_node *params = json_obj_get(&d, root, "parameters");
    const json_node *bo = params ? json_obj_get(&d, params, "binary_data_output") : NULL;
    if (bo && bo->type == JSON_TRUE) r->binary_output = true;
    const json_node *outs = json_obj_get(&d, root, "outputs");
    if (outs && outs->type == JSON_ARRAY) {
        for (const json_node *o = json_child(&d, outs); o; o = json_next(&d, o)) {
            const json_node *nm = json_obj_get(&d, o, "name");
            if (!nm || nm->type != JSON_STRING || strcmp(json_str(&d, nm), "probabilities") != 0) {
                st = spine_fail(err, SPINE_ERR_INVALID, "the only output is \"probabilities\"");
                goto out;
            }
            const json_node *op = json_obj_get(&d, o, "parameters");
            const json_node *b = op ? json_obj_get(&d, op, "binary_data") : NULL;
            if (b && b->type == JSON_TRUE) r->binary_output = true;
        }
    }
    st = parse_inputs(&d, json_obj_get(&d, root, "inputs"), ins, body + jl, len - jl, err);
    if (st) goto out;
    /* shapes against the model */
    in_desc *dn = &ins[IN_DENSE], *ln = &ins[IN_LENGTHS], *vl = &ins[IN_VALUES],
            *wt = &ins[IN_WEIGHTS];
    if (!dn->node || !ln->node || !vl->node) {
        st = spine_fail(err, SPINE_ERR_INVALID, "inputs dense, lengths and values are required");
        goto out;
    }
    if (dn->type != W_FP32 || dn->ndim != 2 || dn->shape[1] != md->num_dense || dn->shape[0] < 1 ||
        dn->shape[0] > PROTO_MAX_BATCH) {
        st = spine_fail(err, SPINE_ERR_INVALID,
                        "input 'dense' must be FP32 [B, %d] with 1 <= B <= %d", md->num_dense,
                        PROTO_MAX_BATCH);
        goto out;
    }
    int64_t B = dn->shape[0];
    if (ln->type != W_INT32 || ln->ndim != 2 || ln->shape[0] != md->num_tables ||
        ln->shape[1] != B) {
        st = spine_fail(err, SPINE_ERR_INVALID, "input 'lengths' must be INT32 [%d, %lld]",
                        md->num_tables, (long long)B);
        goto out;
    }
    if ((vl->type != W_INT64 && vl->type != W_INT32) || vl->ndim != 1) {
        st = spine_fail(err, SPINE_ERR_INVALID, "input 'values' must be INT64 or INT32 [N]");
        goto out;
    }
    if (wt->node && (wt->type != W_FP32 || wt->ndim != 1 || wt->count != vl->count)) {
        st = spine_fail(err, SPINE_ERR_INVALID, "input 'weights' must be FP32 [%lld]",
                        (long long)vl->count);
        goto out;
    }
    r->batch = (int32_t)B;
    r->nvalues = vl->count;
    if (admit && !admit(admit_arg, r->batch)) {
        r->refused = true;
        goto out;
    }
    int64_t *len64 = NULL;
    /* binary values are converted below, table by table, as their range is checked: one pass */
    if (vl->bin && !(r->values = malloc((size_t)SPINE_MAX(vl->count, 1) * 8))) {
        st = spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((st = load(&d, dn, "dense", false, (void **)&r->dense, err)) ||
        (st = load(&d, ln, "lengths", true, (void **)&len64, err)) ||
        (!vl->bin && (st = load(&d, vl, "values", true, (void **)&r->values, err))) ||
        (wt->node && (st = load(&d, wt, "weights", false, (void **)&r->weights, err)))) {
        free(len64);
        goto out;
    }
    r->lengths = malloc((size_t)ln->count * sizeof *r->lengths);
    if (!r->lengths) {
        free(len64);
        st = spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (int64_t i = 0; i < ln->count; i++) {
        if (len64[i] < 0 || len64[i] > INT32_MAX) {
            st = spine_fail(err, SPINE_ERR_INVALID, "lengths[%lld] = %lld is out of range",
                            (long long)i, (long long)len64[i]);
            free(len64);
            goto out;
        }
        r->lengths[i] = (int32_t)len64[i];
    }
    free(len64);
    spine_batch b = {r->batch, r->dense, r->lengths, r->values, r->weights};
    if ((st = spine_batch_validate(m, &b, r->nvalues, err))) goto out;
    /* every index inside its table, here, so that a merged batch never fails for one request */
    int64_t pos = 0;
    for (int t = 0; t < md->num_tables; t++) {
        int64_t tsum = 0;
        for (int64_t i = 0; i < B; i++) tsum += r->lengths[t * B + i];
        uint64_t rows = (uint64_t)md->tables[t].rows;
        int64_t *v = r->values;
        /* INT32 on the wire: widened and checked in one pass (the usual case, and the hot one) */
        bool checked = vl->bin && vl->type == W_INT32 &&
                       sls_widen_indices((const uint8_t *)vl->bin + 4 * pos, v + pos, (size_t)tsum,
                                         (int64_t)rows, sls_best_isa());
        if (vl->bin && vl->type == W_INT64) memcpy(v + pos, vl->bin + 8 * pos, (size_t)tsum * 8);
        for (int64_t k = pos; k < pos + tsum && !checked; k++) {
            if ((uint64_t)v[k] >= rows) {
                st = spine_fail(err, SPINE_ERR_RANGE,
                                "table '%s': index %lld at values[%lld] is outside [0, %lld)",
                                md->tables[t].name, (long long)r->values[k], (long long)k,
                                (long long)rows);
                goto out;
            }
        }
        pos += tsum;
    }
out:
    json_free(&d);
    if (st) infer_request_free(r);
    return st;
}

void proto_error_json(spine_buf *b, const char *msg) {
    spine_buf_puts(b, "{\"error\":");
    json_write_string(b, msg, strlen(msg));
    spine_buf_puts(b, "}");
}

spine_status proto_encode_infer(const char *model_name, const infer_request *r, const float *out,
                                spine_buf *b, size_t *json_len) {
    spine_buf_puts(b, "{\"model_name\":");
    json_write_string(b, model_name, strlen(model_name));
    spine_buf_puts(b, ",\"model_version\":\"1\"");
    if (r->id[0]) {
        spine_buf_puts(b, ",\"id\":");
        json_write_string(b, r->id, strlen(r->id));
    }
    spine_buf_printf(
        b, ",\"outputs\":[{\"name\":\"probabilities\",\"datatype\":\"FP32\",\"shape\":[%d,1]",
        r->batch);
    *json_len = 0;
    if (r->binary_output) {
        spine_buf_printf(b, ",\"parameters\":{\"binary_data_size\":%zu}}]}", (size_t)r->batch * 4);
        *json_len = b->len;
        spine_buf_append(b, out, (size_t)r->batch * 4);
    } else {
        spine_buf_puts(b, ",\"data\":[");
        for (int32_t i = 0; i < r->batch; i++) {
            if (isfinite(out[i]))
                spine_buf_printf(b, "%s%.9g", i ? "," : "", out[i]);
            else
                spine_buf_printf(b, "%snull", i ? "," : "");
        }
        spine_buf_puts(b, "]}]}");
    }
    return b->failed ? SPINE_ERR_NOMEM : SPINE_OK;
}
