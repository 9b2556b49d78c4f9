/* moe_run.c: the MoE transformer forward pass: embedding, RMSNorm, rotary positions, grouped-
 * query attention over a KV cache (causal decoder, or bidirectional encoder), the feed-forward
 * block (moe_gating.c), final norm and logits. One orchestrating thread; every heavy step is a
 * parallel region on spine's pool. */
#include "moe_ctx.h"

#include "../kernels/kernels.h"
#include "../kernels/attn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

bool moe_fbuf_need(moe_fbuf *b, size_t n) {
    if (n <= b->cap) return true;
    size_t cap = SPINE_MAX(n, b->cap + b->cap / 2);
    float *p = spine_alloc_aligned(cap * sizeof(float));
    if (!p) return false;
    spine_free_aligned(b->p);
    b->p = p;
    b->cap = cap;
    return true;
}

static void fbuf_free(moe_fbuf *b) {
    spine_free_aligned(b->p);
    b->p = NULL;
    b->cap = 0;
}

spine_status moe_ctx_create(const moe_model *m, const moe_run_opts *o, spine_pool *pool,
                            moe_ctx **out, spine_error *err) {
    const moe_config *cf = &m->c;
    if (o->max_batch < 1 || o->max_batch > 65536 || o->max_seq < 1 || o->max_seq > (1 << 24))
        return spine_fail(err, SPINE_ERR_INVALID, "max_batch and max_seq must be positive");
    int limit = cf->max_pos;
    if (cf->sliding_window > 0) limit = SPINE_MIN(limit, cf->sliding_window);
    if (o->max_seq > limit)
        return spine_fail(err, SPINE_ERR_LIMIT,
                          "sequence length %d exceeds the model's maximum of %d positions%s",
                          o->max_seq, limit, cf->sliding_window ? " (sliding window)" : "");
    if (o->gating == MOE_GATING_STATIC && !(o->capacity_factor > 0.0 && o->capacity_factor < 1e6))
        return spine_fail(err, SPINE_ERR_INVALID, "capacity factor must be positive");
    dense_init(); /* BLAS single-threaded: the pool owns parallelism (static gating's GEMMs) */
    moe_ctx *c = calloc(1, sizeof *c);
    if (!c) return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    c->m = m;
    c->o = *o;
    c->pool = pool;
    c->nthreads = pool ? spine_pool_size(pool) : 1;
    c->max_pos = o->max_seq;
    int maxk = SPINE_MAX(SPINE_MAX(cf->hidden, cf->inter), cf->heads * cf->head_dim);
    spine_status st = mm_ctx_init(&c->mm, pool, maxk, err);
    if (st) {
        free(c);
        return st;
    }
    size_t kvd = (size_t)cf->kv_heads * cf->head_dim, cache;
    bool ok = spine_mul_size((size_t)cf->layers * o->max_batch, (size_t)o->max_seq, &cache) &&
              spine_mul_size(cache, kvd * sizeof(float), &cache);
    if (!ok) {
        moe_ctx_free(c);
        return spine_fail(err, SPINE_ERR_LIMIT, "KV cache size overflows");
    }
    c->kcache = spine_alloc_huge(cache);
    c->vcache = spine_alloc_huge(cache);
    c->scores = calloc((size_t)c->nthreads, sizeof *c->scores);
    c->counts = calloc((size_t)SPINE_MAX(cf->experts, 1) * 3, sizeof(int));
    c->last_drops = calloc((size_t)cf->layers, sizeof(uint64_t));
    c->jobs = calloc((size_t)SPINE_MAX(cf->experts, 1), sizeof *c->jobs);
    c->tcounts = calloc((size_t)SPINE_MAX(cf->experts, 1), sizeof *c->tcounts);
    c->pinned = calloc((size_t)SPINE_MAX(cf->experts, 1), sizeof *c->pinned);
    c->group = calloc((size_t)SPINE_MAX(cf->experts, 1), sizeof *c->group);
    c->glist = calloc((size_t)SPINE_MAX(cf->experts, 1), sizeof *c->glist);
    c->predicted = calloc((size_t)cf->layers * SPINE_MAX(cf->experts, 1), 1);
    c->next_moe = calloc((size_t)cf->layers, sizeof *c->next_moe);
    if (!c->kcache || !c->vcache || !c->scores || !c->counts || !c->last_drops || !c->jobs ||
        !c->tcounts || !c->pinned || !c->group || !c->glist || !c->predicted || !c->next_moe) {
        if (c->kcache) spine_free_huge(c->kcache, cache);
        if (c->vcache) spine_free_huge(c->vcache, cache);
        c->kcache = c->vcache = NULL;
        moe_ctx_free(c);
        return spine_fail(err, SPINE_ERR_NOMEM, "out of memory (KV cache: %zu bytes)", 2 * cache);
    }
    c->offs = c->counts + SPINE_MAX(cf->experts, 1);
    c->fill = c->offs + SPINE_MAX(cf->experts, 1);
    for (int t = 0; t < c->nthreads; t++) {
        c->scores[t] = spine_alloc_aligned((size_t)o->max_seq * (size_t)(cf->heads / cf->kv_heads) *
                                           sizeof(float)); /* a key/value head's query heads */
        if (!c->scores[t]) {
            moe_ctx_free(c);
            return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
        }
    }
    for (int li = cf->layers - 1, next = -1; li >= 0; li--) {
        c->next_moe[li] = next;
        if (m->layers[li].is_moe) next = li;
    }
    if (o->placement) {
        if (o->expert_slots > 0) {
            moe_ctx_free(c);
            return spine_fail(err, SPINE_ERR_UNSUPPORTED,
                              "expert placement and expert buffering together are not supported");
        }
        st = moe_ctx_set_placement(c, o->placement, o->n_placement, err);
        if (st) {
            moe_ctx_free(c);
            return st;
        }
    }
    if (o->expert_slots > 0) {
        st = moe_tier_init(&c->tier, m, o->expert_slots, (moe_policy)o->expert_policy, o->slow_gbps,
                           pool, err);
        if (st) {
            moe_ctx_free(c);
            return st;
        }
    }
    *out = c;
    return SPINE_OK;
}

void moe_ctx_free(moe_ctx *c) {
    if (!c) return;
    const moe_config *cf = &c->m->c;
    size_t cache = (size_t)cf->layers * c->o.max_batch * (size_t)c->o.max_seq *
                   (size_t)cf->kv_heads * cf->head_dim * sizeof(float);
    if (c->kcache) spine_free_huge(c->kcache, cache);
    if (c->vcache) spine_free_huge(c->vcache, cache);
    if (c->scores)
        for (int t = 0; t < c->nthreads; t++) spine_free_aligned(c->scores[t]);
    free(c->scores);
    moe_fbuf *bufs[] = {&c->x,   &c->xn,   &c->q,      &c->k,     &c->v,  &c->att,
                        &c->tmp, &c->last, &c->logits, &c->gw,    &c->g,  &c->h1,
                        &c->h3,  &c->ob,   &c->dmask,  &c->cmask, &c->xd, &c->rope};
    for (size_t i = 0; i < SPINE_ARRAY_LEN(bufs); i++) fbuf_free(bufs[i]);
    free(c->ex);
    free(c->row);
    free(c->counts);
    free(c->last_drops);
    free(c->jobs);
    free(c->tcounts);
    free(c->pinned);
    free(c->group);
    free(c->glist);
    free(c->predicted);
    free(c->next_moe);
    moe_tier_free(&c->tier);
    moe_ctx_free_placement(c);
    mm_ctx_free(&c->mm);
    free(c);
}

void moe_ctx_reset(moe_ctx *c) {
    c->pos = 0;
    c->batch = 0;
}
int moe_ctx_pos(const moe_ctx *c) {
    return c->pos;
}
const moe_report *moe_ctx_report(const moe_ctx *c) {
    return &c->rep;
}
mm_ctx *moe_ctx_mm(moe_ctx *c) {
    return &c->mm;
}
void moe_ctx_free_placement(moe_ctx *c) {
    free(c->layer_pl);
    free(c->pjobs);
    free(c->pjob_group);
    free(c->group_rows);
    c->layer_pl = NULL;
    c->pjobs = NULL;
    c->pjob_group = NULL;
    c->group_rows = NULL;
}

spine_status moe_ctx_set_placement(moe_ctx *c, const moe_placement *pl, int n, spine_error *err) {
    const moe_config *cf = &c->m->c;
    int groups = 0, copies = 1;
    c->layer_pl = calloc((size_t)cf->layers, sizeof *c->layer_pl);
    if (!c->layer_pl) return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        if (pl[i].experts != cf->experts)
            return spine_fail(err, SPINE_ERR_INVALID,
                              "placement: %d experts per layer, the model has %d", pl[i].experts,
                              cf->experts);
        if (pl[i].layer >= cf->layers || !c->m->layers[pl[i].layer].is_moe)
            return spine_fail(err, SPINE_ERR_INVALID,
                              "placement: layer %d is not an MoE layer of this model", pl[i].layer);
        c->layer_pl[pl[i].layer] = &pl[i];
        groups = SPINE_MAX(groups, pl[i].groups);
        copies = SPINE_MAX(copies, pl[i].max_copies);
    }
    for (int li = 0; li < cf->layers; li++)
        if (c->m->layers[li].is_moe && !c->layer_pl[li])
            return spine_fail(err, SPINE_ERR_INVALID, "placement: no entry for MoE layer %d", li);
    size_t nj = (size_t)cf->experts * copies;
    c->pjobs = calloc(2 * nj, sizeof *c->pjobs);
    c->pjob_group = calloc(nj, sizeof *c->pjob_group);
    c->group_rows = calloc((size_t)groups, sizeof *c->group_rows);
    c->groups = groups;
    if (!c->pjobs || !c->pjob_group || !c->group_rows)
        return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    return SPINE_OK;
}

const uint64_t *moe_ctx_group_rows(const moe_ctx *c, int *groups) {
    *groups = c->groups;
    return c->group_rows;
}

void moe_ctx_tier_stats(const moe_ctx *c, moe_tier_stats *out) {
    const moe_tier *t = &c->tier;
    *out = (moe_tier_stats){.slots = t->slots,
                            .hits = t->hits,
                            .misses = t->misses,
                            .bytes_moved = t->bytes_moved,
                            .fast_bytes = (uint64_t)t->moe_layers * t->slots * t->expert_bytes,
                            .expert_bytes_all = c->m->expert_bytes,
                            .load_s = t->load_s,
                            .prefetched = t->prefetched,
                            .pred_hits = c->pred_hits,
                            .pred_total = c->pred_total,
                            .actual_total = c->actual_total};
}

void moe_ctx_set_trace(moe_ctx *c, struct moe_trace *t) {
    c->trace = t;
}
const uint64_t *moe_ctx_last_drops(const moe_ctx *c) {
    return c->last_drops;
}

static void rmsnorm(const float *x, const float *w, int n, double eps, float *out) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float r = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) out[i] = w[i] * (x[i] * r);
}

/* A position's rotary cos and sin, hd / 2 of each: angles computed as PyTorch does, in float32
 * (inv_freq * position), so positions far out round the same way. */
static void rope_angles(int hd, int pos, const double *inv_freq, float *cs, float *sn) {
    for (int i = 0; i < hd / 2; i++) {
        float ang = (float)inv_freq[i] * (float)pos;
        cs[i] = (float)cos((double)ang);
        sn[i] = (float)sin((double)ang);
    }
}

/* Hugging Face's rotate_half convention: pairs (i, i + d/2), by one position's angles. */
static void rope(float *v, int nheads, int hd, const float *csv, const float *snv) {
    int h2 = hd / 2;
    for (int i = 0; i < h2; i++) {
        float cs = csv[i], sn = snv[i];
        for (int h = 0; h < nheads; h++) {
            float *p = v + (size_t)h * hd;
            float a = p[i], b = p[i + h2];
            p[i] = a * cs - b * sn;
            p[i + h2] = b * cs + a * sn;
        }
    }
}

/* The steps between the weight products that work on each token's row alone, run over the rows
 * in parallel when there are enough of them (a prefill): the residual add and the next RMSNorm
 * fused in one pass, and the rotary positions with the KV cache's copy. */
typedef enum row_step {
    ROW_NORM1, /* x += tmp (the previous layer's FFN out; not before layer 0); xn = ln1(x) */
    ROW_NORM2, /* x += tmp (the attention out); xn = ln2(x) */
    ROW_ROPE,  /* rotary positions on q and k; k and v into the cache */
    ROW_ADD,   /* x += tmp (the last layer's FFN out) */
} row_step;

typedef struct row_arg {
    moe_ctx *c;
    row_step step;
    int li, T, pos0, ntasks;
    size_t S;
} row_arg;

static void row_task(void *arg, int task, int thread) {
    (void)thread;
    const row_arg *a = arg;
    moe_ctx *c = a->c;
    const moe_config *cf = &c->m->c;
    const moe_layer *L = &c->m->layers[a->li];
    const int H = cf->hidden, hd = cf->head_dim, qd = cf->heads * hd, kvd = cf->kv_heads * hd;
    const size_t s0 = a->S * (size_t)task / (size_t)a->ntasks;
    const size_t s1 = a->S * (size_t)(task + 1) / (size_t)a->ntasks;
    for (size_t s = s0; s < s1; s++) {
        float *x = c->x.p + s * H;
        const float *tmp = c->tmp.p + s * H;
        switch (a->step) {
        case ROW_NORM1:
        case ROW_NORM2:
        case ROW_ADD:
            if (a->step != ROW_NORM1 || a->li > 0)
                for (int i = 0; i < H; i++) x[i] += tmp[i];
            if (a->step != ROW_ADD)
                rmsnorm(x, a->step == ROW_NORM1 ? L->ln1 : L->ln2, H, cf->rms_eps, c->xn.p + s * H);
            break;
        case ROW_ROPE: {
            int b = (int)(s / (size_t)a->T), t = (int)(s % (size_t)a->T);
            const float *cs = c->rope.p + (size_t)t * hd, *sn = cs + hd / 2;
            rope(c->q.p + s * qd, cf->heads, hd, cs, sn);
            rope(c->k.p + s * kvd, cf->kv_heads, hd, cs, sn);
            size_t seq = ((size_t)a->li * c->o.max_batch + b) * (size_t)c->o.max_seq;
            float *kt = c->kcache + seq * kvd + a->pos0 + t; /* keys transposed: [kvd][max_seq] */
            for (int e = 0; e < kvd; e++) kt[(size_t)e * c->o.max_seq] = c->k.p[s * kvd + e];
            memcpy(c->vcache + (seq + a->pos0 + t) * kvd, c->v.p + s * kvd, kvd * sizeof(float));
            break;
        }
        }
    }
}

#define ROWS_PARALLEL 16 /* rows from which the row steps run on the pool (below: inline) */

static void rows_run(moe_ctx *c, row_step step, int li, size_t S, int T, int pos0) {
    row_arg a = {c, step, li, T, pos0, 1, S};
    if (S < ROWS_PARALLEL || !c->pool) {
        row_task(&a, 0, 0);
        return;
    }
    a.ntasks = (int)SPINE_MIN(S, (size_t)c->nthreads * 4);
    spine_pool_run(c->pool, a.ntasks, row_task, &a);
}

typedef struct attn_arg {
    moe_ctx *c;
    int li, B, T, pos0;
} attn_arg;

/* one task per sequence and key/value head: its G = heads / kv_heads query heads together
 * (attn_rows shares each key and value load among them) */
static void attn_task(void *arg, int task, int thread) {
    attn_arg *a = arg;
    moe_ctx *c = a->c;
    const moe_config *cf = &c->m->c;
    int b = task / cf->kv_heads, kvh = task % cf->kv_heads;
    int hd = cf->head_dim, kvd = cf->kv_heads * hd, qd = cf->heads * hd;
    int G = cf->heads / cf->kv_heads;
    size_t seq = ((size_t)a->li * c->o.max_batch + b) * (size_t)c->o.max_seq;
    const size_t ms = (size_t)c->o.max_seq;
    const float *Kt = c->kcache + seq * kvd + (size_t)kvh * hd * ms; /* [hd][max_seq] */
    const float *V = c->vcache + seq * kvd + (size_t)kvh * hd;
    float *sc = c->scores[thread];
    float scale = 1.0f / sqrtf((float)hd);
    for (int t = 0; t < a->T; t++) {
        size_t s = (size_t)b * a->T + t, h0 = (size_t)kvh * G * hd;
        int nk = c->o.encoder ? a->T : a->pos0 + t + 1;
        attn_rows(c->q.p + s * qd + h0, (size_t)hd, G, Kt, ms, V, (size_t)kvd, nk, hd, scale, sc,
                  c->att.p + s * qd + h0, (size_t)hd);
    }
}

static void embed_row(const mm_weight *e, int64_t tok, float *out) {
    size_t base = (size_t)tok * e->k;
    if (e->dt == SPINE_DT_F32)
        memcpy(out, (const float *)e->data + base, (size_t)e->k * sizeof(float));
    else
        for (int i = 0; i < e->k; i++)
            out[i] = spine_bf16_to_f32(((const uint16_t *)e->data)[base + i]);
}

spine_status moe_forward(moe_ctx *c, const int64_t *tokens, int B, int T, float *logits,
                         spine_error *err) {
    const moe_model *m = c->m;
    const moe_config *cf = &m->c;
    if (B < 1 || T < 1 || B > c->o.max_batch)
        return spine_fail(err, SPINE_ERR_INVALID, "batch %d x %d tokens: batch must be 1..%d", B, T,
                          c->o.max_batch);
    if ((uint64_t)B * (uint64_t)T > MOE_MAX_STEP_TOKENS)
        return spine_fail(err, SPINE_ERR_LIMIT, "%d x %d tokens in one step: at most %d", B, T,
                          MOE_MAX_STEP_TOKENS);
    if (c->o.encoder) moe_ctx_reset(c);
    if (c->pos > 0 && B != c->batch)
        return spine_fail(err, SPINE_ERR_INVALID,
                          "batch of %d sequences, but the cache holds %d (reset first)", B,
                          c->batch);
    if ((int64_t)c->pos + T > c->max_pos)
        return spine_fail(err, SPINE_ERR_LIMIT,
                          "sequence of %lld tokens exceeds the maximum of %d (max_seq / "
                          "max_position_embeddings)",
                          (long long)c->pos + T, c->max_pos);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int64_t id = tokens[(size_t)b * T + t];
            if (id < 0 || id >= cf->vocab)
                return spine_fail(err, SPINE_ERR_RANGE,
                                  "token id %lld at sequence %d, position %d is outside the "
                                  "vocabulary [0, %d)",
                                  (long long)id, b, c->pos + t, cf->vocab);
        }
    size_t S = (size_t)B * T;
    int H = cf->hidden, hd = cf->head_dim, qd = cf->heads * hd, kvd = cf->kv_heads * hd;
    if (!moe_fbuf_need(&c->x, S * H) || !moe_fbuf_need(&c->xn, S * H) ||
        !moe_fbuf_need(&c->q, S * qd) || !moe_fbuf_need(&c->k, S * kvd) ||
        !moe_fbuf_need(&c->v, S * kvd) || !moe_fbuf_need(&c->att, S * qd) ||
        !moe_fbuf_need(&c->tmp, S * H) || !moe_fbuf_need(&c->last, (size_t)B * H) ||
        !moe_fbuf_need(&c->rope, (size_t)T * hd))
        return spine_fail(err, SPINE_ERR_NOMEM, "out of memory (activations for %zu tokens)", S);
    for (size_t s = 0; s < S; s++) embed_row(&m->embed, tokens[s], c->x.p + s * H);
    int pos0 = c->pos;
    for (int t = 0; t < T; t++) {
        float *cs = c->rope.p + (size_t)t * hd;
        rope_angles(hd, pos0 + t, m->rope_inv_freq, cs, cs + hd / 2);
    }
    memset(c->last_drops, 0, (size_t)cf->layers * sizeof(uint64_t));
    memset(c->predicted, 0, (size_t)cf->layers * SPINE_MAX(cf->experts, 1));
    spine_status st = SPINE_OK;
    for (int li = 0; li < cf->layers && !st; li++) {
        const moe_layer *L = &m->layers[li];
        rows_run(c, ROW_NORM1, li, S, T, pos0);
        mm_job qkv[3] = {
            {.x = c->xn.p, .m = (int)S, .ldx = H, .w = L->q, .y = c->q.p, .ldy = qd},
            {.x = c->xn.p, .m = (int)S, .ldx = H, .w = L->k, .y = c->k.p, .ldy = kvd},
            {.x = c->xn.p, .m = (int)S, .ldx = H, .w = L->v, .y = c->v.p, .ldy = kvd},
        };
        st = mm_run(&c->mm, qkv, 3, err);
        if (st) break;
        rows_run(c, ROW_ROPE, li, S, T, pos0);
        attn_arg aa = {c, li, B, T, pos0};
        const uint64_t ta = spine_now_ns();
        spine_pool_run(c->pool, B * cf->kv_heads, attn_task, &aa);
        c->rep.attn_ns += spine_now_ns() - ta;
        mm_job oj = {.x = c->att.p, .m = (int)S, .ldx = qd, .w = L->o, .y = c->tmp.p, .ldy = H};
        st = mm_run(&c->mm, &oj, 1, err);
        if (st) break;
        rows_run(c, ROW_NORM2, li, S, T, pos0);
        st = moe_ffn_forward(c, li, c->xn.p, (int)S, c->tmp.p, err);
        /* (its residual add: with the next layer's norm, or below after the last) */
    }
    if (!st) rows_run(c, ROW_ADD, cf->layers - 1, S, T, pos0);
    if (st) {
        moe_ctx_reset(c); /* the cache is now partial */
        return st;
    }
    mm_job lj = {.w = m->lm_head, .y = logits, .ldy = cf->vocab};
    if (c->o.logits_all) {
        for (size_t s = 0; s < S; s++)
            rmsnorm(c->x.p + s * H, m->norm, H, cf->rms_eps, c->xn.p + s * H);
        lj.x = c->xn.p, lj.m = (int)S, lj.ldx = H;
    } else {
        for (int b = 0; b < B; b++)
            rmsnorm(c->x.p + ((size_t)b * T + T - 1) * H, m->norm, H, cf->rms_eps,
                    c->last.p + (size_t)b * H);
        lj.x = c->last.p, lj.m = B, lj.ldx = H;
    }
    st = mm_run(&c->mm, &lj, 1, err);
    if (st) return st;
    c->batch = B;
    c->pos = c->o.encoder ? 0 : pos0 + T;
    c->step++;
    return SPINE_OK;
}
