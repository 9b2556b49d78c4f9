/* moe_presets.c: MoE model presets (moe-tiny, mixtral-mini, moe-lm) and deterministic random
 * weights for them, generated in parallel in fixed-size chunks with per-chunk seeds so the
 * result does not depend on the thread count. */
#include "moe.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

const char *const moe_preset_names[] = {"moe-tiny", "mixtral-mini", "moe-lm", NULL};

spine_status moe_preset_config(const char *name, moe_config *c, spine_error *err) {
    memset(c, 0, sizeof *c);
    snprintf(c->model_type, sizeof c->model_type, "mixtral");
    c->top_k = 2;
    c->moe_every = 1;
    c->rms_eps = 1e-5;
    c->norm_topk = true;
    c->dtype = SPINE_DT_F32;
    if (strcmp(name, "moe-tiny") == 0) {
        c->hidden = 64, c->inter = 96, c->layers = 2, c->heads = 4, c->kv_heads = 2;
        c->experts = 8, c->vocab = 512, c->max_pos = 512, c->rope_theta = 10000.0;
    } else if (strcmp(name, "mixtral-mini") == 0) {
        c->hidden = 1024, c->inter = 3584, c->layers = 8, c->heads = 16, c->kv_heads = 4;
        c->experts = 8, c->vocab = 32000, c->max_pos = 32768, c->rope_theta = 1e6;
    } else if (strcmp(name, "moe-lm") == 0) {
        c->hidden = 512, c->inter = 2048, c->layers = 12, c->heads = 8, c->kv_heads = 8;
        c->experts = 64, c->vocab = 32000, c->max_pos = 2048, c->rope_theta = 10000.0;
    } else {
        return spine_fail(err, SPINE_ERR_INVALID,
                          "unknown MoE preset '%s' (moe-tiny, mixtral-mini, moe-lm)", name);
    }
    c->head_dim = c->hidden / c->heads;
    return SPINE_OK;
}

/* ---- random weights ---- */
#define CHUNK ((size_t)1 << 20)

typedef struct gen_tensor {
    char name[128];
    int64_t d0, d1; /* d1 < 0: vector */
    int fan_in;     /* 0: norm (1 + noise); -1: embedding (std 1) */
    void *data;
    size_t numel;
} gen_tensor;

typedef struct gen_job {
    gen_tensor *t;
    int nt;
    size_t *chunk_start; /* prefix: first global chunk of each tensor */
    spine_dtype dt;
    uint64_t seed;
    atomic_uint_fast64_t done;
    uint64_t total;
    spine_progress_fn progress;
    void *parg;
} gen_job;

static void gen_task(void *arg, int task, int thread) {
    gen_job *j = arg;
    int ti = 0;
    while (ti + 1 < j->nt && j->chunk_start[ti + 1] <= (size_t)task) ti++;
    gen_tensor *t = &j->t[ti];
    size_t c = (size_t)task - j->chunk_start[ti];
    size_t b = c * CHUNK, e = SPINE_MIN(t->numel, b + CHUNK);
    spine_rng r;
    spine_rng_seed(&r, spine_hash64(j->seed ^ spine_hash64(((uint64_t)ti << 32) | c)));
    float std = t->fan_in > 0 ? 1.0f / sqrtf((float)t->fan_in) : 1.0f;
    float a = std * sqrtf(3.0f);
    for (size_t i = b; i < e; i++) {
        float u = spine_rng_uniform(&r) * 2.0f - 1.0f;
        float v = t->fan_in == 0 ? 1.0f + 0.1f * u : a * u;
        if (j->dt == SPINE_DT_BF16)
            ((uint16_t *)t->data)[i] = spine_f32_to_bf16(v);
        else
            ((float *)t->data)[i] = v;
    }
    uint64_t bytes = (e - b) * spine_dtype_size(j->dt);
    uint64_t d = atomic_fetch_add(&j->done, bytes) + bytes;
    if (thread == 0 && j->progress) j->progress(j->parg, d, j->total);
}

spine_status moe_gen_tensors(const moe_config *c, spine_dtype dt, uint64_t seed, spine_pool *pool,
                             spine_progress_fn progress, void *parg, spine_tensors *out,
                             spine_error *err) {
    if (dt != SPINE_DT_F32 && dt != SPINE_DT_BF16)
        return spine_fail(err, SPINE_ERR_INVALID, "MoE weights are F32 or BF16");
    int H = c->hidden, F = c->inter, qd = c->heads * c->head_dim, kvd = c->kv_heads * c->head_dim;
    size_t cap = 4 + (size_t)c->layers * (8 + 3 * (size_t)SPINE_MAX(c->experts, 1));
    gen_tensor *t = calloc(cap, sizeof *t);
    size_t *cs = calloc(cap + 1, sizeof *cs);
    if (!t || !cs) {
        free(t);
        free(cs);
        return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    }
    int n = 0;
#define ADD(D0, D1, FAN, ...)                                                                      \
    (snprintf(t[n].name, sizeof t[n].name, __VA_ARGS__), t[n].d0 = (D0), t[n].d1 = (D1),           \
     t[n].fan_in = (FAN), n++)
    ADD(c->vocab, H, -1, "model.embed_tokens.weight");
    for (int i = 0; i < c->layers; i++) {
        ADD(H, -1, 0, "model.layers.%d.input_layernorm.weight", i);
        ADD(qd, H, H, "model.layers.%d.self_attn.q_proj.weight", i);
        ADD(kvd, H, H, "model.layers.%d.self_attn.k_proj.weight", i);
        ADD(kvd, H, H, "model.layers.%d.self_attn.v_proj.weight", i);
        ADD(H, qd, qd, "model.layers.%d.self_attn.o_proj.weight", i);
        ADD(H, -1, 0, "model.layers.%d.post_attention_layernorm.weight", i);
        if (moe_layer_is_moe(c, i)) {
            ADD(c->experts, H, H, "model.layers.%d.block_sparse_moe.gate.weight", i);
            for (int e = 0; e < c->experts; e++) {
                ADD(F, H, H, "model.layers.%d.block_sparse_moe.experts.%d.w1.weight", i, e);
                ADD(H, F, F, "model.layers.%d.block_sparse_moe.experts.%d.w2.weight", i, e);
                ADD(F, H, H, "model.layers.%d.block_sparse_moe.experts.%d.w3.weight", i, e);
            }
        } else {
            ADD(F, H, H, "model.layers.%d.mlp.gate_proj.weight", i);
            ADD(H, F, F, "model.layers.%d.mlp.down_proj.weight", i);
            ADD(F, H, H, "model.layers.%d.mlp.up_proj.weight", i);
        }
    }
    ADD(H, -1, 0, "model.norm.weight");
    if (!c->tie_embeddings) ADD(c->vocab, H, H, "lm_head.weight");
#undef ADD
    spine_status st = SPINE_OK;
    size_t chunks = 0;
    uint64_t total = 0;
    memset(out, 0, sizeof *out);
    for (int i = 0; i < n && !st; i++) {
        t[i].numel = (size_t)t[i].d0 * (size_t)(t[i].d1 < 0 ? 1 : t[i].d1);
        size_t bytes = t[i].numel * spine_dtype_size(dt);
        t[i].data = spine_alloc_huge(bytes);
        int64_t shape[2] = {t[i].d0, t[i].d1};
        if (!t[i].data ||
            !st_add_owned_huge(out, t[i].name, dt, t[i].d1 < 0 ? 1 : 2, shape, t[i].data, bytes)) {
            if (t[i].data) spine_free_huge(t[i].data, bytes);
            st = spine_fail(err, SPINE_ERR_NOMEM, "out of memory generating %s", t[i].name);
            break;
        }
        cs[i] = chunks;
        chunks += (t[i].numel + CHUNK - 1) / CHUNK;
        total += bytes;
    }
    if (!st) {
        gen_job j = {.t = t,
                     .nt = n,
                     .chunk_start = cs,
                     .dt = dt,
                     .seed = seed,
                     .total = total,
                     .progress = progress,
                     .parg = parg};
        atomic_init(&j.done, 0);
        spine_pool_run(pool, (int)chunks, gen_task, &j);
        if (progress) progress(parg, total, total);
    } else {
        st_free(out);
    }
    free(t);
    free(cs);
    return st;
}

void moe_skew_router(spine_tensors *ts, const moe_config *c, double alpha, uint64_t seed) {
    if (alpha <= 0) return;
    int E = c->experts;
    int *perm = malloc((size_t)E * sizeof *perm);
    if (!perm) return;
    spine_rng r;
    spine_rng_seed(&r, seed ^ 0x5eed5eedull);
    for (int li = 0; li < c->layers; li++) {
        if (!moe_layer_is_moe(c, li)) continue;
        char name[128];
        snprintf(name, sizeof name, "model.layers.%d.block_sparse_moe.gate.weight", li);
        spine_tensor *t = (spine_tensor *)st_find(ts, name);
        if (!t || !t->owned) continue;
        for (int e = 0; e < E; e++) perm[e] = e;
        for (int e = E - 1; e > 0; e--) {
            int j = (int)spine_rng_below(&r, (uint64_t)e + 1), x = perm[e];
            perm[e] = perm[j];
            perm[j] = x;
        }
        for (int rank = 0; rank < E; rank++) {
            float s = (float)pow(rank + 1.0, -alpha);
            size_t base = (size_t)perm[rank] * c->hidden;
            for (int i = 0; i < c->hidden; i++) {
                if (t->dtype == SPINE_DT_BF16) {
                    uint16_t *p = (uint16_t *)t->owned + base + i;
                    *p = spine_f32_to_bf16(spine_bf16_to_f32(*p) * s);
                } else {
                    ((float *)t->owned)[base + i] *= s;
                }
            }
        }
    }
    free(perm);
}
