/* moe_ctx.h: the run context shared by the forward pass (moe_run.c) and the gating and
 * expert-dispatch code (moe_gating.c): KV cache, activation buffers, statistics. */
#ifndef SPINE_MOE_CTX_H
#define SPINE_MOE_CTX_H

#include "moe.h"
#include "moe_trace.h"

/* The tiered expert store (moe_tier.c): `slots` expert buffers per layer in front of the
 * model's weights. */
typedef struct moe_tier {
    int moe_layers, experts, slots;
    int *moe_index; /* [model layers]: the MoE layer's index in the arrays below, -1 if dense */
    moe_policy policy;
    double slow_gbps; /* 0: copy as fast as memory allows */
    spine_dtype dt1, dt2, dt3;
    size_t b1, b2, b3, expert_bytes; /* bytes of w1, w2, w3; one slot (64-byte rounded) */
    uint8_t *buf;                    /* [moe_layers][slots][expert_bytes], 2 MiB pages */
    size_t buf_bytes;
    int *slot_expert; /* [moe_layers][slots]: the expert in each slot, -1 when empty */
    int64_t *state;   /* [moe_layers][4][experts]: slot + 1, loaded_at, last_used, uses */
    bool *cand, *pin;
    uint8_t *active;
    double *ready;    /* [moe_layers][experts]: when the emulated link has delivered it */
    double link_free; /* when the emulated link is next idle */
    int64_t clock;
    uint64_t hits, misses, bytes_moved, prefetched;
    double load_s;
} moe_tier;
/* Allocates the fast tier and touches every page of it now (over the pool), so that a miss later
 * pays for its copy alone, not for the kernel zeroing fresh memory. */
spine_status moe_tier_init(moe_tier *t, const moe_model *m, int slots, moe_policy p,
                           double slow_gbps, spine_pool *pool, spine_error *err);
void moe_tier_free(moe_tier *t);
/* Make expert e of layer li resident (evicting none of `pinned`) and describe its weights in the
 * fast tier. batch_counts: the current batch's tokens per expert (for lifo). */
spine_status moe_tier_fetch(moe_tier *t, const moe_model *m, spine_pool *pool, int li, int e,
                            const bool *pinned, const int *batch_counts, moe_ffn *out,
                            spine_error *err);
/* Start loading the experts predicted for layer li (up to its slots, lowest ids first) without
 * waiting for the emulated link: its transfer time then overlaps the work until they are used. */
void moe_tier_prefetch(moe_tier *t, const moe_model *m, spine_pool *pool, int li,
                       const uint8_t *predicted);

/* A growable float buffer; activation footprints are measured from what a step needs. */
typedef struct moe_fbuf {
    float *p;
    size_t cap; /* floats */
} moe_fbuf;

struct moe_ctx {
    const moe_model *m;
    moe_run_opts o;
    spine_pool *pool;
    int nthreads;
    mm_ctx mm;
    int pos;     /* tokens already in the cache (per sequence) */
    int batch;   /* sequences in the cache */
    int max_pos; /* min(max_seq, max_position_embeddings, sliding_window) */
    /* keys [layers][max_batch][kv_dim][max_seq] (transposed: attn.h), values
     * [layers][max_batch][max_seq][kv_dim] */
    float *kcache, *vcache;
    float **scores; /* per thread [heads / kv_heads][max_seq] */
    moe_fbuf x, xn, q, k, v, att, tmp, last;
    moe_fbuf rope; /* this forward's rotary cos and sin, [T][head_dim / 2] each */
    /* gating */
    moe_fbuf logits, gw, g, h1, h3, ob, dmask, cmask, xd;
    int *ex, *row;
    size_t ex_cap;
    int *counts, *offs, *fill;
    mm_job *jobs; /* [experts] */
    moe_report rep;
    uint64_t *last_drops;
    moe_trace *trace;  /* when set: every forward's per-layer expert token counts go here */
    int64_t step;      /* forward calls so far (the trace's batch index) */
    uint32_t *tcounts; /* [experts] */
    moe_tier tier;     /* used when o.expert_slots > 0 */
    bool *pinned;      /* [experts]: the group of experts about to run */
    moe_ffn *group;    /* [experts]: their weights in the fast tier */
    int *glist;        /* [experts]: their ids */
    /* next-layer expert prediction (o.expert_prefetch): the next MoE layer's router applied to
     * this layer's normalised hidden state; predicted[moe layer][expert] */
    uint8_t *predicted;
    int *next_moe; /* [layers]: the next MoE layer after each layer, -1 for none */
    uint64_t pred_hits, pred_total, actual_total;
    /* expert parallelism */
    const moe_placement **layer_pl; /* [layers]: the placement of each MoE layer, or NULL */
    mm_job *pjobs;                  /* [2 * experts * copies]: (gate+up, down) per expert copy */
    int *pjob_group;                /* [experts * copies] */
    int npjobs, groups;
    uint64_t *group_rows; /* [groups] */
};

/* Make b hold at least n floats; false when out of memory. */
bool moe_fbuf_need(moe_fbuf *b, size_t n);
/* The feed-forward block of layer li on xn [S, H] into out [S, H] (MoE or dense). */
spine_status moe_ctx_set_placement(moe_ctx *c, const moe_placement *pl, int n, spine_error *err);
void moe_ctx_free_placement(moe_ctx *c);
spine_status moe_ffn_forward(moe_ctx *c, int li, const float *xn, int S, float *out,
                             spine_error *err);

#endif
