/* moe_gating.c: the feed-forward block: router (softmax over experts, top-k, optional
 * renormalisation), and the two ways of running experts (paper: "Towards MoE Deployment"):
 *
 *  static  (GShard / fairseq baseline): every expert has capacity C = ceil(CF * k * S / E)
 *          slots (at least 1, at most S). Slots fill in priority order: every token's first
 *          choice in token order, then every token's second choice, ...; an assignment that
 *          finds its expert full is dropped (the token keeps only what its other assignments
 *          and the residual give it). Tokens move through a dense dispatch mask [S, E*C]
 *          (dispatched = mask^T . x, a GEMM), every expert runs on all C slots (empty ones are
 *          zero rows: the padding), and a dense combine matrix [S, E*C] holding the gate
 *          weights brings results back (out = combine . expert_out, a GEMM).
 *  dynamic: count tokens per expert, order assignments by expert (stable in token order),
 *          gather each expert's tokens into one contiguous group, run each expert as a grouped
 *          GEMM on exactly its tokens, scatter-combine with the gate weights. Nothing dropped,
 *          nothing padded.
 *
 * Gate weights are the softmax probabilities of the top-k experts, divided by their sum when
 * norm_topk_prob (Mixtral), computed before any capacity drop. */
#include "moe_ctx.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>

static spine_status need_int(moe_ctx *c, size_t n, spine_error *err) {
    if (n <= c->ex_cap) return SPINE_OK;
    int *a = realloc(c->ex, n * sizeof *a);
    if (a) c->ex = a;
    int *b = realloc(c->row, n * sizeof *b);
    if (b) c->row = b;
    if (!a || !b) return spine_fail(err, SPINE_ERR_NOMEM, "out of memory (routing)");
    c->ex_cap = n;
    return SPINE_OK;
}

/* softmax + top-k for every token: c->ex [S, k] experts, c->gw [S, k] gate weights */
static void route(moe_ctx *c, const float *logits, int S) {
    const moe_config *cf = &c->m->c;
    int E = cf->experts, K = cf->top_k;
    for (int s = 0; s < S; s++) {
        const float *l = logits + (size_t)s * E;
        float mx = l[0];
        for (int e = 1; e < E; e++) mx = l[e] > mx ? l[e] : mx;
        float sum = 0.0f;
        for (int e = 0; e < E; e++) sum += expf(l[e] - mx);
        int *ex = c->ex + (size_t)s * K;
        float *gw = c->gw.p + (size_t)s * K;
        float tot = 0.0f;
        for (int j = 0; j < K; j++) {
            int best = -1;
            for (int e = 0; e < E; e++) {
                bool taken = false;
                for (int i = 0; i < j; i++) taken |= ex[i] == e;
                if (!taken && (best < 0 || l[e] > l[best])) best = e;
            }
            ex[j] = best;
            gw[j] = expf(l[best] - mx) / sum;
            tot += gw[j];
        }
        if (cf->norm_topk)
            for (int j = 0; j < K; j++) gw[j] /= tot;
    }
}

static spine_status run_dense_ffn(moe_ctx *c, const moe_ffn *f, const float *xn, int S, float *out,
                                  spine_error *err) {
    int H = c->m->c.hidden, F = c->m->c.inter;
    if (!moe_fbuf_need(&c->h1, (size_t)S * F) || !moe_fbuf_need(&c->h3, (size_t)S * F))
        return spine_fail(err, SPINE_ERR_NOMEM, "out of memory (FFN activations)");
    mm_job a = {
        .x = xn, .m = S, .ldx = H, .w = f->w1, .y = c->h1.p, .ldy = F, .w3 = f->w3, .y3 = c->h3.p};
    spine_status st = mm_run(&c->mm, &a, 1, err);
    if (st) return st;
    mm_job b = {.x = c->h1.p, .m = S, .ldx = F, .w = f->w2, .y = out, .ldy = H};
    return mm_run(&c->mm, &b, 1, err);
}

/* Expert parallelism: one task per worker group runs, one thread each, the experts the
 * placement gives it; a replicated expert's rows are split evenly over its copies. */
typedef struct placed_arg {
    moe_ctx *c;
} placed_arg;

static void placed_task(void *arg, int g, int thread) {
    moe_ctx *c = ((placed_arg *)arg)->c;
    for (int i = 0; i < c->npjobs; i++) {
        if (c->pjob_group[i] != g) continue;
        const mm_job *up = &c->pjobs[2 * i], *down = &c->pjobs[2 * i + 1];
        mm_job_rows(&c->mm, thread, up, 0, up->w.n);
        mm_job_rows(&c->mm, thread, down, 0, down->w.n);
    }
}

static spine_status run_placed(moe_ctx *c, const moe_layer *L, const moe_placement *pl,
                               const int *off, const int *cnt, const float *in, float *outb) {
    const moe_config *cf = &c->m->c;
    int H = cf->hidden, F = cf->inter, C = pl->max_copies;
    c->npjobs = 0;
    for (int e = 0; e < cf->experts; e++) {
        if (!cnt[e]) continue;
        int copies = 0;
        for (int k = 0; k < C; k++) copies += pl->group[e * C + k] >= 0;
        for (int k = 0, j = 0; k < C; k++) {
            int g = pl->group[e * C + k];
            if (g < 0) continue;
            int r0 = off[e] + (int)((int64_t)cnt[e] * j / copies);
            int r1 = off[e] + (int)((int64_t)cnt[e] * (j + 1) / copies);
            j++;
            if (r1 == r0) continue;
            int i = c->npjobs++;
            c->pjob_group[i] = g;
            c->group_rows[g] += (uint64_t)(r1 - r0);
            c->mm.flops += 3ull * 2 * (uint64_t)(r1 - r0) * (uint64_t)H * (uint64_t)F;
            c->pjobs[2 * i] = (mm_job){.x = in + (size_t)r0 * H,
                                       .m = r1 - r0,
                                       .ldx = H,
                                       .w = L->experts[e].w1,
                                       .y = c->h1.p + (size_t)r0 * F,
                                       .ldy = F,
                                       .w3 = L->experts[e].w3,
                                       .y3 = c->h3.p + (size_t)r0 * F};
            c->pjobs[2 * i + 1] = (mm_job){.x = c->h1.p + (size_t)r0 * F,
                                           .m = r1 - r0,
                                           .ldx = F,
                                           .w = L->experts[e].w2,
                                           .y = outb + (size_t)r0 * H,
                                           .ldy = H};
        }
    }
    placed_arg a = {c};
    spine_pool_run(c->pool, pl->groups, placed_task, &a);
    return SPINE_OK;
}

/* expert e runs on rows [off, off + n) of in [., H] into outb [., H], through h1/h3 [., F].
 * All experts run as one group (two parallel regions); with an expert tier, groups of at most
 * `slots` experts in id order, each group fetched into the fast tier before it runs. */
static spine_status run_experts(moe_ctx *c, int li, const moe_layer *L, const int *off,
                                const int *cnt, const float *in, float *outb, spine_error *err) {
    if (c->layer_pl && c->layer_pl[li])
        return run_placed(c, L, c->layer_pl[li], off, cnt, in, outb);
    const moe_config *cf = &c->m->c;
    int H = cf->hidden, F = cf->inter, E = cf->experts;
    bool tiered = c->o.expert_slots > 0;
    int limit = tiered ? c->tier.slots : E;
    mm_job *jobs = c->jobs;
    spine_status st = SPINE_OK;
    for (int e0 = 0; e0 < E && !st;) {
        int ng = 0, e = e0;
        for (; e < E && ng < limit; e++)
            if (cnt[e]) c->glist[ng++] = e, c->pinned[e] = true;
        e0 = e;
        for (int i = 0; i < ng && !st; i++) {
            int x = c->glist[i];
            if (tiered)
                st = moe_tier_fetch(&c->tier, c->m, c->pool, li, x, c->pinned, cnt, &c->group[i],
                                    err);
            else
                c->group[i] = L->experts[x];
        }
        for (int i = 0; i < ng; i++) c->pinned[c->glist[i]] = false;
        if (st || ng == 0) break;
        for (int i = 0; i < ng; i++) {
            int x = c->glist[i];
            jobs[i] = (mm_job){.x = in + (size_t)off[x] * H,
                               .m = cnt[x],
                               .ldx = H,
                               .w = c->group[i].w1,
                               .y = c->h1.p + (size_t)off[x] * F,
                               .ldy = F,
                               .w3 = c->group[i].w3,
                               .y3 = c->h3.p + (size_t)off[x] * F};
        }
        st = mm_run(&c->mm, jobs, ng, err);
        if (st) break;
        for (int i = 0; i < ng; i++) {
            int x = c->glist[i];
            jobs[i] = (mm_job){.x = c->h1.p + (size_t)off[x] * F,
                               .m = cnt[x],
                               .ldx = F,
                               .w = c->group[i].w2,
                               .y = outb + (size_t)off[x] * H,
                               .ldy = H};
        }
        st = mm_run(&c->mm, jobs, ng, err);
    }
    return st;
}

static spine_status ffn_dynamic(moe_ctx *c, int li, const moe_layer *L, const float *xn, int S,
                                float *out, spine_error *err) {
    const moe_config *cf = &c->m->c;
    int H = cf->hidden, F = cf->inter, E = cf->experts, K = cf->top_k;
    size_t A = (size_t)S * K;
    if (!moe_fbuf_need(&c->g, A * H) || !moe_fbuf_need(&c->ob, A * H) ||
        !moe_fbuf_need(&c->h1, A * F) || !moe_fbuf_need(&c->h3, A * F))
        return spine_fail(err, SPINE_ERR_NOMEM, "out of memory (expert activations)");
    int *cnt = c->counts, *off = c->offs, *fill = c->fill;
    memset(cnt, 0, (size_t)E * sizeof *cnt);
    for (size_t a = 0; a < A; a++) cnt[c->ex[a]]++;
    for (int e = 0, o = 0; e < E; e++) {
        off[e] = o;
        fill[e] = 0;
        o += cnt[e];
    }
    for (size_t a = 0; a < A; a++) {
        int e = c->ex[a];
        c->row[a] = off[e] + fill[e]++;
        memcpy(c->g.p + (size_t)c->row[a] * H, xn + (a / K) * H, (size_t)H * sizeof(float));
    }
    spine_status st = run_experts(c, li, L, off, cnt, c->g.p, c->ob.p, err);
    if (st) return st;
    for (int s = 0; s < S; s++) {
        float *o = out + (size_t)s * H;
        for (int i = 0; i < H; i++) o[i] = 0.0f;
        for (int j = 0; j < K; j++) {
            size_t a = (size_t)s * K + j;
            const float *y = c->ob.p + (size_t)c->row[a] * H;
            float w = c->gw.p[a];
            for (int i = 0; i < H; i++) o[i] += w * y[i];
        }
    }
    c->rep.slots_computed += A;
    uint64_t act = (uint64_t)A * (2 * H + 2 * F) * 4 + (uint64_t)S * E * 4 + A * 12;
    c->rep.act_bytes_peak = SPINE_MAX(c->rep.act_bytes_peak, act);
    return SPINE_OK;
}

/* one parallel region of row-block GEMMs: the static dispatch and combine */
typedef struct gemm_arg {
    bool trans_a;
    int rows, n, k; /* C[rows, n] = op(A)[rows, k] . B[k, n] */
    const float *a, *b;
    int lda;
    float *out;
    int block;
} gemm_arg;

static void gemm_task(void *arg, int task, int thread) {
    gemm_arg *g = arg;
    int r0 = task * g->block, nr = SPINE_MIN(g->block, g->rows - r0);
    if (g->trans_a)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nr, g->n, g->k, 1.0f, g->a + r0,
                    g->lda, g->b, g->n, 0.0f, g->out + (size_t)r0 * g->n, g->n);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, g->n, g->k, 1.0f,
                    g->a + (size_t)r0 * g->lda, g->lda, g->b, g->n, 0.0f,
                    g->out + (size_t)r0 * g->n, g->n);
}

static void gemm_rows(moe_ctx *c, gemm_arg *g) {
    int tasks = c->nthreads * 4;
    g->block = SPINE_MAX(1, (g->rows + tasks - 1) / tasks);
    spine_pool_run(c->pool, (g->rows + g->block - 1) / g->block, gemm_task, g);
}

static spine_status ffn_static(moe_ctx *c, int li, const moe_layer *L, const float *xn, int S,
                               float *out, spine_error *err) {
    const moe_config *cf = &c->m->c;
    int H = cf->hidden, F = cf->inter, E = cf->experts, K = cf->top_k;
    double cap = ceil(c->o.capacity_factor * K * (double)S / E);
    int C = (int)SPINE_MAX(1.0, SPINE_MIN(cap, (double)S));
    size_t EC = (size_t)E * C, mask;
    if (!spine_mul_size((size_t)S, EC, &mask) || mask > ((size_t)1 << 34))
        return spine_fail(err, SPINE_ERR_LIMIT,
                          "static gating: dispatch mask of %d tokens x %zu slots is too large", S,
                          EC);
    if (!moe_fbuf_need(&c->dmask, mask) || !moe_fbuf_need(&c->cmask, mask) ||
        !moe_fbuf_need(&c->xd, EC * H) || !moe_fbuf_need(&c->ob, EC * H) ||
        !moe_fbuf_need(&c->h1, EC * F) || !moe_fbuf_need(&c->h3, EC * F))
        return spine_fail(err, SPINE_ERR_NOMEM,
                          "out of memory (static gating: %zu-slot dispatch for %d tokens)", EC, S);
    memset(c->dmask.p, 0, mask * sizeof(float));
    memset(c->cmask.p, 0, mask * sizeof(float));
    int *fill = c->fill, *cnt = c->counts, *off = c->offs;
    memset(fill, 0, (size_t)E * sizeof *fill);
    uint64_t dropped = 0, tok_dropped = 0;
    for (int j = 0; j < K; j++)
        for (int s = 0; s < S; s++) {
            size_t a = (size_t)s * K + j;
            int e = c->ex[a];
            if (fill[e] < C) {
                size_t col = (size_t)e * C + fill[e]++;
                c->dmask.p[(size_t)s * EC + col] = 1.0f;
                c->cmask.p[(size_t)s * EC + col] = c->gw.p[a];
                c->row[a] = 1;
            } else {
                c->row[a] = 0;
                dropped++;
            }
        }
    for (int s = 0; s < S; s++) {
        bool any = false;
        for (int j = 0; j < K; j++) any |= c->row[(size_t)s * K + j] != 0;
        tok_dropped += !any;
    }
    /* dispatch: xd[E*C, H] = mask^T . xn */
    gemm_arg d = {.trans_a = true,
                  .rows = (int)EC,
                  .n = H,
                  .k = S,
                  .a = c->dmask.p,
                  .lda = (int)EC,
                  .b = xn,
                  .out = c->xd.p};
    gemm_rows(c, &d);
    /* every expert on all of its C slots, padding included */
    for (int e = 0; e < E; e++) {
        cnt[e] = C;
        off[e] = e * C;
    }
    spine_status st = run_experts(c, li, L, off, cnt, c->xd.p, c->ob.p, err);
    if (st) return st;
    /* combine: out[S, H] = combine . expert_out */
    gemm_arg g = {.trans_a = false,
                  .rows = S,
                  .n = H,
                  .k = (int)EC,
                  .a = c->cmask.p,
                  .lda = (int)EC,
                  .b = c->ob.p,
                  .out = out};
    gemm_rows(c, &g);
    c->rep.dropped += dropped;
    c->rep.tokens_dropped += tok_dropped;
    c->last_drops[li] = dropped;
    c->rep.slots_computed += EC;
    uint64_t act = (uint64_t)mask * 8 + (uint64_t)EC * (2 * H + 2 * F) * 4 + (uint64_t)S * E * 4 +
                   (uint64_t)S * K * 8;
    c->rep.act_bytes_peak = SPINE_MAX(c->rep.act_bytes_peak, act);
    return SPINE_OK;
}

/* Next-layer expert prediction: score this layer's prediction for li against its routing, then
 * apply the next MoE layer's router to this layer's normalised hidden state (an approximation:
 * the next layer sees the state after one more attention block) and, with an expert tier,
 * start loading the predicted experts. */
static spine_status predict_next(moe_ctx *c, int li, const float *xn, int S, spine_error *err) {
    const moe_config *cf = &c->m->c;
    int E = cf->experts, K = cf->top_k;
    uint8_t *mine = c->predicted + (size_t)li * E;
    bool had = false;
    for (int e = 0; e < E; e++) had |= mine[e] != 0;
    if (had) {
        int *cnt = c->counts; /* scratch here: tokens per expert of this layer */
        memset(cnt, 0, (size_t)E * sizeof *cnt);
        for (size_t a = 0; a < (size_t)S * K; a++) cnt[c->ex[a]]++;
        for (int e = 0; e < E; e++) {
            c->pred_total += mine[e] != 0;
            c->actual_total += cnt[e] > 0;
            c->pred_hits += mine[e] && cnt[e] > 0;
        }
    }
    int nl = c->next_moe[li];
    if (nl < 0) return SPINE_OK;
    mm_job r = {
        .x = xn, .m = S, .ldx = cf->hidden, .w = c->m->layers[nl].gate, .y = c->logits.p, .ldy = E};
    spine_status st = mm_run(&c->mm, &r, 1, err);
    if (st) return st;
    uint8_t *next = c->predicted + (size_t)nl * E;
    memset(next, 0, (size_t)E);
    for (int s = 0; s < S; s++) {
        const float *l = c->logits.p + (size_t)s * E;
        int chosen[8]; /* the K best (K <= 8), ties to the lower id */
        for (int j = 0; j < K; j++) {
            int best = -1;
            for (int e = 0; e < E; e++) {
                bool used = false;
                for (int i = 0; i < j; i++) used |= chosen[i] == e;
                if (!used && (best < 0 || l[e] > l[best])) best = e;
            }
            chosen[j] = best;
            next[best] = 1;
        }
    }
    if (c->o.expert_slots > 0) moe_tier_prefetch(&c->tier, c->m, c->pool, nl, next);
    return SPINE_OK;
}

spine_status moe_ffn_forward(moe_ctx *c, int li, const float *xn, int S, float *out,
                             spine_error *err) {
    const moe_layer *L = &c->m->layers[li];
    if (!L->is_moe) return run_dense_ffn(c, &L->experts[0], xn, S, out, err);
    const moe_config *cf = &c->m->c;
    int E = cf->experts, K = cf->top_k;
    size_t A = (size_t)S * K;
    spine_status st = need_int(c, A, err);
    if (st) return st;
    if (!moe_fbuf_need(&c->logits, (size_t)S * E) || !moe_fbuf_need(&c->gw, A))
        return spine_fail(err, SPINE_ERR_NOMEM, "out of memory (router)");
    mm_job r = {.x = xn, .m = S, .ldx = cf->hidden, .w = L->gate, .y = c->logits.p, .ldy = E};
    st = mm_run(&c->mm, &r, 1, err);
    if (st) return st;
    route(c, c->logits.p, S);
    if (c->o.expert_prefetch) {
        st = predict_next(c, li, xn, S, err);
        if (st) return st;
    }
    if (c->trace) {
        memset(c->tcounts, 0, (size_t)E * sizeof *c->tcounts);
        for (size_t a = 0; a < A; a++) c->tcounts[c->ex[a]]++;
        st = moe_trace_add(c->trace, c->step, li, c->tcounts, err);
        if (st) return st;
    }
    c->rep.assignments += A;
    if (c->o.gating == MOE_GATING_STATIC) return ffn_static(c, li, L, xn, S, out, err);
    return ffn_dynamic(c, li, L, xn, S, out, err);
}
