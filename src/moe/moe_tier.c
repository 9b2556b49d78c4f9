/* moe_tier.c: the tiered expert store (expert buffering). Experts live in a slow tier — the
 * model's weights where they are: a mapped safetensors file (read from disk as needed, so
 * experts larger than RAM still run) or memory — and a bounded fast tier of `slots` expert
 * buffers per MoE layer. An expert runs from the fast tier: a miss copies its three matrices in
 * (over the pool), throttled to `slow_gbps` when set, to reproduce a host-to-device link; the
 * victim is chosen by an eviction policy (moe_policy_victim), never among the experts of the
 * group about to run. Values are copied bit for bit, so outputs equal the all-resident run. */
#include "moe_ctx.h"

#include <limits.h>
#include <stdlib.h>
#include <time.h>

#define COPY_CHUNK ((size_t)1 << 20)

void moe_tier_free(moe_tier *t) {
    if (t->buf) spine_free_huge(t->buf, t->buf_bytes);
    free(t->slot_expert);
    free(t->moe_index);
    free(t->state);
    free(t->cand);
    free(t->active);
    free(t->ready);
    free(t->pin);
    memset(t, 0, sizeof *t);
}

#define TOUCH_CHUNK ((size_t)2 << 20)

typedef struct touch_arg {
    uint8_t *buf;
    size_t bytes;
} touch_arg;

/* write one byte in every 4 KiB page of chunk `task` (the kernel zeroes the rest) */
static void touch_task(void *arg, int task, int thread) {
    (void)thread;
    touch_arg *a = arg;
    size_t from = (size_t)task * TOUCH_CHUNK, to = SPINE_MIN(a->bytes, from + TOUCH_CHUNK);
    for (size_t i = from; i < to; i += 4096) a->buf[i] = 0;
}

spine_status moe_tier_init(moe_tier *t, const moe_model *m, int slots, moe_policy p,
                           double slow_gbps, spine_pool *pool, spine_error *err) {
    memset(t, 0, sizeof *t);
    const moe_config *c = &m->c;
    if (p == MOE_POLICY_BELADY)
        return spine_fail(err, SPINE_ERR_INVALID,
                          "Belady's MIN needs the future: use it in `spine moe cache-sim`");
    if (slots < 1) return spine_fail(err, SPINE_ERR_INVALID, "expert slots must be at least 1");
    if (!(slow_gbps >= 0.0))
        return spine_fail(err, SPINE_ERR_INVALID, "slow-tier bandwidth must be >= 0");
    int E = c->experts;
    const moe_ffn *f0 = NULL;
    for (int li = 0; li < c->layers; li++)
        if (m->layers[li].is_moe) {
            f0 = &m->layers[li].experts[0];
            break;
        }
    if (!f0) return spine_fail(err, SPINE_ERR_INVALID, "the model has no MoE layer");
    t->dt1 = f0->w1.dt, t->dt2 = f0->w2.dt, t->dt3 = f0->w3.dt;
    for (int li = 0; li < c->layers; li++)
        for (int e = 0; m->layers[li].is_moe && e < E; e++) {
            const moe_ffn *f = &m->layers[li].experts[e];
            if (f->w1.dt != t->dt1 || f->w2.dt != t->dt2 || f->w3.dt != t->dt3)
                return spine_fail(err, SPINE_ERR_UNSUPPORTED,
                                  "expert tiers need every expert in the same dtypes (layer %d, "
                                  "expert %d differs)",
                                  li, e);
        }
    size_t FH = (size_t)c->inter * c->hidden;
    t->b1 = FH * spine_dtype_size(t->dt1);
    t->b3 = FH * spine_dtype_size(t->dt3);
    t->b2 = FH * spine_dtype_size(t->dt2);
    t->expert_bytes = (t->b1 + t->b3 + t->b2 + 63) / 64 * 64;
    t->moe_index = malloc((size_t)c->layers * sizeof *t->moe_index);
    if (!t->moe_index) return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    for (int li = 0; li < c->layers; li++)
        t->moe_index[li] = m->layers[li].is_moe ? t->moe_layers++ : -1;
    t->experts = E, t->slots = SPINE_MIN(slots, E);
    t->policy = p, t->slow_gbps = slow_gbps;
    size_t ns = (size_t)t->moe_layers * t->slots;
    if (!spine_mul_size(ns, t->expert_bytes, &t->buf_bytes))
        return spine_fail(err, SPINE_ERR_LIMIT, "expert tier size overflows");
    t->buf = spine_alloc_huge(t->buf_bytes);
    t->slot_expert = malloc(ns * sizeof *t->slot_expert);
    t->state = calloc((size_t)t->moe_layers * E * 4, sizeof *t->state);
    t->cand = calloc((size_t)E, sizeof *t->cand);
    t->active = calloc((size_t)E, 1);
    t->ready = calloc((size_t)t->moe_layers * E, sizeof *t->ready);
    t->pin = calloc((size_t)E, sizeof *t->pin);
    if (!t->buf || !t->slot_expert || !t->state || !t->cand || !t->active || !t->ready || !t->pin) {
        moe_tier_free(t);
        return spine_fail(err, SPINE_ERR_NOMEM, "out of memory (expert tier: %zu bytes)",
                          ns * t->expert_bytes);
    }
    for (size_t i = 0; i < ns; i++) t->slot_expert[i] = -1;
    size_t nchunks = (t->buf_bytes + TOUCH_CHUNK - 1) / TOUCH_CHUNK;
    if (nchunks > INT_MAX) {
        moe_tier_free(t);
        return spine_fail(err, SPINE_ERR_LIMIT, "expert tier too large");
    }
    touch_arg ta = {t->buf, t->buf_bytes};
    spine_pool_run(pool, (int)nchunks, touch_task, &ta);
    return SPINE_OK;
}

/* per-layer state arrays: [0] slot of each expert + 1 (0: not resident), [1] loaded_at,
 * [2] last_used, [3] uses */
static int64_t *st_of(const moe_tier *t, int mi, int k) {
    return t->state + ((size_t)mi * 4 + (size_t)k) * t->experts;
}

typedef struct copy_arg {
    uint8_t *dst;
    const uint8_t *src[3];
    size_t len[3], off[3];
} copy_arg;

static size_t chunks(size_t n) {
    return (n + COPY_CHUNK - 1) / COPY_CHUNK;
}

/* task -> (matrix, chunk of it): matrices split into COPY_CHUNK pieces each */
static void copy_task(void *arg, int task, int thread) {
    (void)thread;
    copy_arg *a = arg;
    size_t c = (size_t)task;
    for (int i = 0; i < 3; i++) {
        size_t nc = chunks(a->len[i]);
        if (c >= nc) {
            c -= nc;
            continue;
        }
        size_t pos = c * COPY_CHUNK, n = SPINE_MIN(COPY_CHUNK, a->len[i] - pos);
        memcpy(a->dst + a->off[i] + pos, a->src[i] + pos, n);
        return;
    }
}

static void wait_until(double until) {
    for (double now = spine_now(); now < until; now = spine_now()) {
        double left = until - now;
        struct timespec ts = {0, (long)(left > 1e-3 ? 5e5 : 5e4)};
        nanosleep(&ts, NULL);
    }
}

/* Bring expert e of MoE layer mi into a slot (evicting none of `pinned`); -1 when every slot
 * is pinned. The copy happens now; with a link rate, the expert is ready when the link has
 * carried it after everything queued before (t->link_free), and a synchronous load waits for
 * that. */
static int load(moe_tier *t, const moe_model *m, spine_pool *pool, int li, int mi, int e,
                const bool *pinned, const uint8_t *active, bool async) {
    int E = t->experts;
    int64_t *slot1 = st_of(t, mi, 0), *loaded = st_of(t, mi, 1), *used = st_of(t, mi, 2),
            *uses = st_of(t, mi, 3);
    int *slots = t->slot_expert + (size_t)mi * t->slots;
    int s;
    for (s = 0; s < t->slots && slots[s] >= 0; s++) {
    }
    if (s == t->slots) { /* full: evict */
        for (int x = 0; x < E; x++) t->cand[x] = slot1[x] > 0 && !pinned[x];
        int v = moe_policy_victim(t->policy, E, t->cand, loaded, used, uses, NULL, active);
        if (v < 0) return -1;
        s = (int)slot1[v] - 1;
        slot1[v] = 0;
    }
    const moe_ffn *f = &m->layers[li].experts[e];
    copy_arg a = {.dst = t->buf + ((size_t)mi * t->slots + s) * t->expert_bytes,
                  .src = {f->w1.data, f->w3.data, f->w2.data},
                  .len = {t->b1, t->b3, t->b2},
                  .off = {0, t->b1, t->b1 + t->b3}};
    double t0 = spine_now();
    spine_pool_run(pool, (int)(chunks(t->b1) + chunks(t->b3) + chunks(t->b2)), copy_task, &a);
    size_t bytes = t->b1 + t->b2 + t->b3;
    double *ready = t->ready + (size_t)mi * E;
    ready[e] = 0;
    if (t->slow_gbps > 0) {
        t->link_free = SPINE_MAX(t->link_free, t0) + (double)bytes / (t->slow_gbps * 1e9);
        ready[e] = t->link_free;
        if (!async) wait_until(ready[e]);
    }
    t->load_s += spine_now() - t0;
    t->bytes_moved += bytes;
    slots[s] = e;
    slot1[e] = s + 1;
    loaded[e] = ++t->clock;
    return s;
}

spine_status moe_tier_fetch(moe_tier *t, const moe_model *m, spine_pool *pool, int li, int e,
                            const bool *pinned, const int *batch_counts, moe_ffn *out,
                            spine_error *err) {
    int E = t->experts, mi = t->moe_index[li];
    int64_t *slot1 = st_of(t, mi, 0), *used = st_of(t, mi, 2), *uses = st_of(t, mi, 3);
    int s = (int)slot1[e] - 1;
    if (s >= 0) {
        t->hits++;
        double r = t->ready[(size_t)mi * E + e]; /* a prefetch may still be on the link */
        if (r > spine_now()) {
            double t0 = spine_now();
            wait_until(r);
            t->load_s += spine_now() - t0;
        }
    } else {
        t->misses++;
        for (int x = 0; x < E; x++) t->active[x] = batch_counts[x] > 0;
        s = load(t, m, pool, li, mi, e, pinned, t->active, false);
        if (s < 0)
            return spine_fail(err, SPINE_ERR_INVALID,
                              "expert tier: every slot holds an expert of the running group");
    }
    t->clock++;
    used[e] = t->clock;
    uses[e]++;
    const moe_ffn *f = &m->layers[li].experts[e];
    uint8_t *base = t->buf + ((size_t)mi * t->slots + s) * t->expert_bytes;
    *out = (moe_ffn){.w1 = {base, t->dt1, f->w1.n, f->w1.k, f->w1.packed},
                     .w3 = {base + t->b1, t->dt3, f->w3.n, f->w3.k, f->w3.packed},
                     .w2 = {base + t->b1 + t->b3, t->dt2, f->w2.n, f->w2.k, f->w2.packed}};
    return SPINE_OK;
}

void moe_tier_prefetch(moe_tier *t, const moe_model *m, spine_pool *pool, int li,
                       const uint8_t *predicted) {
    int E = t->experts, mi = t->moe_index[li];
    const int64_t *slot1 = st_of(t, mi, 0);
    bool *pin = t->pin; /* the predicted experts evict none of each other */
    for (int x = 0; x < E; x++) pin[x] = predicted[x] != 0;
    for (int e = 0, n = 0; e < E && n < t->slots; e++) {
        if (!predicted[e]) continue;
        n++;
        if (slot1[e] > 0) continue;
        if (load(t, m, pool, li, mi, e, pin, predicted, true) < 0) break;
        t->prefetched++;
    }
}
