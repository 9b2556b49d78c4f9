/* protocol_moe.c: decoding and encoding Open Inference Protocol messages for MoE language
 * models (see protocol_moe.h). Nothing from the wire is trusted: the JSON is parsed with a node
 * cap, shapes, dtypes, element counts and every token id are checked. */
#include "protocol_moe.h"

#include "../base/json.h"

#include <stdio.h>
#include <stdlib.h>

void moe_infer_request_free(moe_infer_request *r) {
    free(r->ids);
    memset(r, 0, sizeof *r);
}

/* row-major leaves of nested arrays of integers into out; count checked by the caller */
static bool flatten_ids(const json_doc *d, const json_node *n, int depth, int64_t *out, int64_t cap,
                        int64_t *k) {
    if (n->type == JSON_NUMBER) {
        int64_t v;
        if (*k >= cap || !json_get_i64(d, n, &v)) return false;
        out[(*k)++] = v;
        return true;
    }
    if (n->type != JSON_ARRAY || depth > 2) return false;
    for (const json_node *e = json_child(d, n); e; e = json_next(d, e))
        if (!flatten_ids(d, e, depth + 1, out, cap, k)) return false;
    return true;
}

static spine_status decode(const json_doc *d, int vocab, int max_batch, int max_len,
                           moe_infer_request *out, spine_error *err) {
    const json_node *root = json_root(d);
    if (root->type != JSON_OBJECT)
        return spine_fail(err, SPINE_ERR_FORMAT, "the request must be a JSON object");
    const json_node *id = json_obj_get(d, root, "id");
    if (id && id->type == JSON_STRING) snprintf(out->id, sizeof out->id, "%s", json_str(d, id));
    const json_node *params = json_obj_get(d, root, "parameters");
    if (params) {
        if (params->type != JSON_OBJECT)
            return spine_fail(err, SPINE_ERR_FORMAT, "\"parameters\" must be an object");
        const json_node *mt = json_obj_get(d, params, "max_tokens");
        int64_t v = 0;
        if (mt) {
            spine_status st =
                json_get_int_in(d, mt, "parameters.max_tokens", 0, PROTO_MOE_MAX_NEW, &v, err);
            if (st) return st;
        }
        out->max_tokens = (int)v;
    }
    const json_node *inputs = json_obj_get(d, root, "inputs");
    if (!inputs || inputs->type != JSON_ARRAY)
        return spine_fail(err, SPINE_ERR_FORMAT, "the request needs an \"inputs\" array");
    const json_node *t = NULL;
    for (const json_node *e = json_child(d, inputs); e; e = json_next(d, e)) {
        const json_node *nm = e->type == JSON_OBJECT ? json_obj_get(d, e, "name") : NULL;
        if (!nm || nm->type != JSON_STRING)
            return spine_fail(err, SPINE_ERR_FORMAT, "every input needs a \"name\"");
        if (strcmp(json_str(d, nm), "input_ids") != 0)
            return spine_fail(err, SPINE_ERR_FORMAT,
                              "unknown input \"%.64s\" (MoE models take \"input_ids\")",
                              json_str(d, nm));
        if (t) return spine_fail(err, SPINE_ERR_FORMAT, "\"input_ids\" given twice");
        t = e;
    }
    if (!t) return spine_fail(err, SPINE_ERR_FORMAT, "missing input \"input_ids\"");
    const json_node *dt = json_obj_get(d, t, "datatype");
    if (!dt || dt->type != JSON_STRING ||
        (strcmp(json_str(d, dt), "INT64") != 0 && strcmp(json_str(d, dt), "INT32") != 0))
        return spine_fail(err, SPINE_ERR_FORMAT, "\"input_ids\" must have datatype INT64 or INT32");
    const json_node *sh = json_obj_get(d, t, "shape");
    int64_t dims[2];
    int nd = 0;
    if (!sh || sh->type != JSON_ARRAY || sh->count != 2)
        return spine_fail(err, SPINE_ERR_FORMAT, "\"input_ids\" must have shape [B, T]");
    for (const json_node *e = json_child(d, sh); e; e = json_next(d, e)) {
        spine_status st = json_get_int_in(d, e, "shape", 1, INT32_MAX, &dims[nd++], err);
        if (st) return st;
    }
    if (dims[0] > max_batch)
        return spine_fail(err, SPINE_ERR_LIMIT, "%lld sequences: at most %d per request",
                          (long long)dims[0], max_batch);
    if (dims[1] > max_len)
        return spine_fail(err, SPINE_ERR_LIMIT,
                          "sequences of %lld tokens: at most %d (with max_tokens %d)",
                          (long long)dims[1], max_len, out->max_tokens);
    const json_node *data = json_obj_get(d, t, "data");
    if (!data) return spine_fail(err, SPINE_ERR_FORMAT, "\"input_ids\" has no \"data\"");
    int64_t n = dims[0] * dims[1], k = 0;
    out->ids = malloc((size_t)n * sizeof *out->ids);
    if (!out->ids) return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    if (!flatten_ids(d, data, 0, out->ids, n, &k) || k != n)
        return spine_fail(err, SPINE_ERR_FORMAT,
                          "\"input_ids\" data must be %lld integers (shape [%lld, %lld])",
                          (long long)n, (long long)dims[0], (long long)dims[1]);
    for (int64_t i = 0; i < n; i++)
        if (out->ids[i] < 0 || out->ids[i] >= vocab)
            return spine_fail(err, SPINE_ERR_RANGE,
                              "input_ids[%lld][%lld] = %lld is outside the vocabulary [0, %d)",
                              (long long)(i / dims[1]), (long long)(i % dims[1]),
                              (long long)out->ids[i], vocab);
    out->batch = (int)dims[0];
    out->len = (int)dims[1];
    return SPINE_OK;
}

spine_status proto_decode_moe(const char *body, size_t len, int vocab, int max_batch, int max_len,
                              moe_infer_request *out, spine_error *err) {
    memset(out, 0, sizeof *out);
    json_doc d;
    spine_status st = json_parse_limited(&d, body, len, 1u << 22, err);
    if (st) return st;
    /* the sequence length allowed shrinks by the tokens to generate: read them first */
    st = decode(&d, vocab, max_batch, max_len, out, err);
    if (!st && out->len + out->max_tokens > max_len)
        st = spine_fail(err, SPINE_ERR_LIMIT,
                        "%d prompt tokens + %d to generate exceed the maximum of %d positions",
                        out->len, out->max_tokens, max_len);
    json_free(&d);
    if (st) moe_infer_request_free(out);
    return st;
}

spine_status proto_encode_moe(const char *model_name, const moe_infer_request *r, int vocab,
                              const float *logits, const int64_t *gen, spine_buf *b) {
    spine_buf_puts(b, "{\"model_name\":");
    json_write_string(b, model_name, strlen(model_name));
    if (r->id[0]) {
        spine_buf_puts(b, ",\"id\":");
        json_write_string(b, r->id, strlen(r->id));
    }
    if (r->max_tokens == 0) {
        spine_buf_printf(b,
                         ",\"outputs\":[{\"name\":\"logits\",\"datatype\":\"FP32\",\"shape\":[%d,"
                         "%d],\"data\":[",
                         r->batch, vocab);
        for (size_t i = 0; i < (size_t)r->batch * vocab; i++)
            spine_buf_printf(b, i ? ",%.9g" : "%.9g", logits[i]);
    } else {
        spine_buf_printf(b,
                         ",\"outputs\":[{\"name\":\"generated_ids\",\"datatype\":\"INT64\","
                         "\"shape\":[%d,%d],\"data\":[",
                         r->batch, r->max_tokens);
        for (size_t i = 0; i < (size_t)r->batch * r->max_tokens; i++)
            spine_buf_printf(b, i ? ",%lld" : "%lld", (long long)gen[i]);
    }
    spine_buf_puts(b, "]}]}");
    return b->failed ? SPINE_ERR_NOMEM : SPINE_OK;
}
