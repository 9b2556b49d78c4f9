/* moe_ctx.h: the run context shared by the forward pass (moe_run.c) and the gating and
 * expert-dispatch code (moe_gating.c): KV cache, activation buffers, statistics. */
#ifndef SPINE_MOE_CTX_H
#define SPINE_MOE_CTX_H

#include "moe.h"
#include "moe_trace.h"

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
    int pos;                /* tokens already in the cache (per sequence) */
    int batch;              /* sequences in the cache */
    int max_pos;            /* min(max_seq, max_position_embeddings, sliding_window) */
    float *kcache, *vcache; /* [layers][max_batch][max_seq][kv_dim] */
    float **scores;         /* per thread [max_seq] */
    moe_fbuf x, xn, q, k, v, att, tmp, last;
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
};

/* Make b hold at least n floats; false when out of memory. */
bool moe_fbuf_need(moe_fbuf *b, size_t n);
/* The feed-forward block of layer li on xn [S, H] into out [S, H] (MoE or dense). */
spine_status moe_ffn_forward(moe_ctx *c, int li, const float *xn, int S, float *out,
                             spine_error *err);

#endif
