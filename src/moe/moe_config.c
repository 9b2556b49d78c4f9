/* moe_config.c: MoE transformer config.json with the Hugging Face Mixtral keys: parsing with
 * validation, and writing. Keys that change the computation and that spine does not implement
 * (rope_scaling, quantization_config, attention biases, other activations) are errors; keys that
 * only matter for training or tokenisation are read past and listed. */
#include "moe.h"

#include "../base/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct int_key {
    const char *name;
    int *dst;
    int64_t lo, hi;
    bool required;
} int_key;

static const char *const ignorable[] = {
    "_name_or_path",
    "architectures",
    "attention_dropout",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "initializer_range",
    "output_router_logits",
    "router_aux_loss_coef",
    "router_jitter_noise",
    "transformers_version",
    "use_cache",
    "return_dict",
    "output_attentions",
    "output_hidden_states",
    "torchscript",
    "is_encoder_decoder",
    "tokenizer_class",
    "metadata",
    NULL,
};

static bool is_ignorable(const char *k) {
    for (int i = 0; ignorable[i]; i++)
        if (strcmp(ignorable[i], k) == 0) return true;
    return false;
}

static spine_status get_int(const json_doc *d, const json_node *v, const char *key, int64_t lo,
                            int64_t hi, int *out, spine_error *err) {
    int64_t x = 0;
    spine_status st = json_get_int_in(d, v, key, lo, hi, &x, err);
    if (!st) *out = (int)x; /* hi fits an int for every key */
    return st;
}

static spine_status get_num(const json_doc *d, const json_node *v, const char *key, double lo,
                            double hi, double *out, spine_error *err) {
    if (v->type != JSON_NUMBER || !isfinite(v->num) || v->num < lo || v->num > hi)
        return spine_fail(err, SPINE_ERR_FORMAT, "\"%s\" must be a number in [%g, %g]", key, lo,
                          hi);
    *out = v->num;
    return SPINE_OK;
}

static spine_status get_bool(const json_node *v, const char *key, bool *out, spine_error *err) {
    if (v->type != JSON_TRUE && v->type != JSON_FALSE)
        return spine_fail(err, SPINE_ERR_FORMAT, "\"%s\" must be true or false", key);
    *out = v->type == JSON_TRUE;
    return SPINE_OK;
}

static spine_status parse(const json_doc *d, moe_config *c, spine_error *err) {
    const json_node *root = json_root(d);
    if (root->type != JSON_OBJECT)
        return spine_fail(err, SPINE_ERR_FORMAT, "the top level must be an object");
    memset(c, 0, sizeof *c);
    c->head_dim = -1;
    c->kv_heads = -1;
    c->moe_every = 1;
    c->rope_theta = 10000.0;
    c->rms_eps = 1e-5;
    c->max_pos = 4096;
    c->norm_topk = true;
    c->dtype = SPINE_DT_F32;
    snprintf(c->model_type, sizeof c->model_type, "mixtral");
    int have_moe_every = 0;
    int_key ints[] = {
        {"hidden_size", &c->hidden, 1, MOE_MAX_HIDDEN, true},
        {"intermediate_size", &c->inter, 1, MOE_MAX_HIDDEN * 4, true},
        {"num_hidden_layers", &c->layers, 1, MOE_MAX_LAYERS, true},
        {"num_attention_heads", &c->heads, 1, 4096, true},
        {"num_key_value_heads", &c->kv_heads, 1, 4096, false},
        {"head_dim", &c->head_dim, 1, MOE_MAX_HEAD_DIM, false},
        {"num_local_experts", &c->experts, 0, MOE_MAX_EXPERTS, true},
        {"num_experts_per_tok", &c->top_k, 1, 8, true},
        {"vocab_size", &c->vocab, 1, MOE_MAX_VOCAB, true},
        {"max_position_embeddings", &c->max_pos, 1, 1 << 24, false},
        {"moe_every", &c->moe_every, 1, MOE_MAX_LAYERS, false},
        {"decoder_sparse_step", &c->moe_every, 1, MOE_MAX_LAYERS, false},
    };
    bool seen[SPINE_ARRAY_LEN(ints)] = {0};
    size_t ign = 0;
    for (const json_node *k = json_child(d, root); k; k = json_next(d, json_next(d, k))) {
        const char *kn = json_str(d, k);
        const json_node *v = json_next(d, k);
        spine_status st = SPINE_OK;
        size_t i;
        for (i = 0; i < SPINE_ARRAY_LEN(ints); i++)
            if (strcmp(kn, ints[i].name) == 0) break;
        if (i < SPINE_ARRAY_LEN(ints)) {
            if (seen[i]) return spine_fail(err, SPINE_ERR_FORMAT, "\"%s\" appears twice", kn);
            seen[i] = true;
            if (v->type == JSON_NULL && !ints[i].required) continue;
            st = get_int(d, v, kn, ints[i].lo, ints[i].hi, ints[i].dst, err);
            if (!st && ints[i].dst == &c->moe_every) have_moe_every++;
        } else if (strcmp(kn, "rope_theta") == 0) {
            st = get_num(d, v, kn, 1.0, 1e12, &c->rope_theta, err);
        } else if (strcmp(kn, "rms_norm_eps") == 0) {
            st = get_num(d, v, kn, 0.0, 1.0, &c->rms_eps, err);
        } else if (strcmp(kn, "tie_word_embeddings") == 0) {
            st = get_bool(v, kn, &c->tie_embeddings, err);
        } else if (strcmp(kn, "norm_topk_prob") == 0) {
            st = get_bool(v, kn, &c->norm_topk, err);
        } else if (strcmp(kn, "sliding_window") == 0) {
            if (v->type != JSON_NULL) st = get_int(d, v, kn, 1, 1 << 24, &c->sliding_window, err);
        } else if (strcmp(kn, "hidden_act") == 0) {
            if (v->type != JSON_STRING || strcmp(json_str(d, v), "silu") != 0)
                st = spine_fail(err, SPINE_ERR_UNSUPPORTED,
                                "\"hidden_act\": only \"silu\" is "
                                "supported");
        } else if (strcmp(kn, "model_type") == 0) {
            if (v->type != JSON_STRING || strlen(json_str(d, v)) >= sizeof c->model_type)
                st = spine_fail(err, SPINE_ERR_FORMAT, "\"model_type\" must be a short string");
            else
                snprintf(c->model_type, sizeof c->model_type, "%s", json_str(d, v));
        } else if (strcmp(kn, "torch_dtype") == 0) {
            const char *s = v->type == JSON_STRING ? json_str(d, v) : "";
            if (strcmp(s, "float32") == 0)
                c->dtype = SPINE_DT_F32;
            else if (strcmp(s, "bfloat16") == 0)
                c->dtype = SPINE_DT_BF16;
            else
                st = spine_fail(err, SPINE_ERR_UNSUPPORTED,
                                "\"torch_dtype\" must be \"float32\" or \"bfloat16\"");
        } else if (strcmp(kn, "rope_scaling") == 0 || strcmp(kn, "quantization_config") == 0 ||
                   strcmp(kn, "attention_bias") == 0 || strcmp(kn, "mlp_bias") == 0) {
            if (v->type != JSON_NULL && v->type != JSON_FALSE)
                st = spine_fail(err, SPINE_ERR_UNSUPPORTED, "\"%s\" is not supported", kn);
        } else if (is_ignorable(kn) || kn[0] == '_') {
            size_t l = strlen(kn);
            if (ign + l + 2 < sizeof c->ignored) {
                if (ign) c->ignored[ign++] = ',';
                memcpy(c->ignored + ign, kn, l + 1);
                ign += l;
            }
        } else {
            st = spine_fail(err, SPINE_ERR_FORMAT, "unknown key \"%s\"", kn);
        }
        if (st) return st;
    }
    for (size_t i = 0; i < SPINE_ARRAY_LEN(ints); i++)
        if (ints[i].required && !seen[i])
            return spine_fail(err, SPINE_ERR_FORMAT, "missing \"%s\"", ints[i].name);
    if (have_moe_every > 1)
        return spine_fail(err, SPINE_ERR_FORMAT,
                          "give \"moe_every\" or \"decoder_sparse_step\", not both");
    if (c->kv_heads < 0) c->kv_heads = c->heads;
    if (c->head_dim < 0) {
        if (c->hidden % c->heads)
            return spine_fail(err, SPINE_ERR_FORMAT,
                              "hidden_size %d is not a multiple of num_attention_heads %d",
                              c->hidden, c->heads);
        c->head_dim = c->hidden / c->heads;
    }
    if (c->head_dim % 2 || c->head_dim > MOE_MAX_HEAD_DIM)
        return spine_fail(err, SPINE_ERR_FORMAT, "head_dim %d must be even and at most %d",
                          c->head_dim, MOE_MAX_HEAD_DIM);
    if (c->heads % c->kv_heads)
        return spine_fail(err, SPINE_ERR_FORMAT,
                          "num_attention_heads %d is not a multiple of num_key_value_heads %d",
                          c->heads, c->kv_heads);
    if ((int64_t)c->heads * c->head_dim > MOE_MAX_HIDDEN)
        return spine_fail(err, SPINE_ERR_LIMIT, "num_attention_heads x head_dim is too large");
    if (c->experts > 0 && c->top_k > c->experts)
        return spine_fail(err, SPINE_ERR_FORMAT,
                          "num_experts_per_tok %d exceeds num_local_experts %d", c->top_k,
                          c->experts);
    if (c->rms_eps <= 0.0) return spine_fail(err, SPINE_ERR_FORMAT, "rms_norm_eps must be > 0");
    return SPINE_OK;
}

spine_status moe_config_parse(const char *json, size_t len, moe_config *out, spine_error *err) {
    if (len > MOE_MAX_CONFIG_BYTES)
        return spine_fail(err, SPINE_ERR_LIMIT, "config.json: larger than %zu bytes",
                          MOE_MAX_CONFIG_BYTES);
    json_doc d;
    spine_status st = json_parse_limited(&d, json, len, 100000, err);
    if (st) {
        spine_error_prefix(err, "config.json: ");
        return st;
    }
    st = parse(&d, out, err);
    json_free(&d);
    if (st) spine_error_prefix(err, "config.json: ");
    return st;
}

char *moe_config_to_json(const moe_config *c) {
    spine_buf b = {0};
    spine_buf_puts(&b, "{\n  \"architectures\": [\"MixtralForCausalLM\"],\n  \"model_type\": ");
    json_write_string(&b, c->model_type, strlen(c->model_type));
    spine_buf_printf(&b,
                     ",\n  \"hidden_act\": \"silu\",\n"
                     "  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n"
                     "  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n"
                     "  \"num_key_value_heads\": %d,\n  \"head_dim\": %d,\n"
                     "  \"num_local_experts\": %d,\n  \"num_experts_per_tok\": %d,\n"
                     "  \"moe_every\": %d,\n  \"norm_topk_prob\": %s,\n"
                     "  \"vocab_size\": %d,\n  \"max_position_embeddings\": %d,\n"
                     "  \"rope_theta\": %.17g,\n  \"rms_norm_eps\": %.17g,\n"
                     "  \"sliding_window\": null,\n  \"tie_word_embeddings\": %s,\n"
                     "  \"torch_dtype\": \"%s\"\n}\n",
                     c->hidden, c->inter, c->layers, c->heads, c->kv_heads, c->head_dim, c->experts,
                     c->top_k, c->moe_every, c->norm_topk ? "true" : "false", c->vocab, c->max_pos,
                     c->rope_theta, c->rms_eps, c->tie_embeddings ? "true" : "false",
                     c->dtype == SPINE_DT_BF16 ? "bfloat16" : "float32");
    if (b.failed) {
        spine_buf_free(&b);
        return NULL;
    }
    return b.data;
}
