/* moe_trace.h: routing traces (which experts each MoE layer activated per batch, and with how
 * many tokens), synthetic trace generation, expert-cache simulation with pluggable eviction
 * policies (the paper's inactive-first + LIFO, FIFO, LRU, LFU, Belady's MIN), and expert
 * placement over worker groups (round-robin, greedy by load, greedy with anti-correlation,
 * greedy with replication of the hottest experts). Format: docs/MOE.md "Routing traces". */
#ifndef SPINE_MOE_TRACE_H
#define SPINE_MOE_TRACE_H

#include "../base/base.h"

#define MOE_TRACE_MAX_EXPERTS 4096
#define MOE_TRACE_MAX_LAYERS 1024
#define MOE_TRACE_MAX_BYTES ((size_t)1 << 30)

typedef struct moe_trace {
    int experts;           /* E */
    int top_k;             /* k (informational) */
    uint64_t expert_bytes; /* bytes of one expert's weights, 0 when unknown */
    size_t n, cap;         /* records */
    int64_t *step;         /* [n] batch index, non-decreasing */
    int *layer;            /* [n] model layer index */
    uint32_t *counts;      /* [n * E] tokens routed to each expert */
} moe_trace;

void moe_trace_init(moe_trace *t, int experts, int top_k, uint64_t expert_bytes);
void moe_trace_free(moe_trace *t);
/* Append one record (counts: E entries). */
spine_status moe_trace_add(moe_trace *t, int64_t step, int layer, const uint32_t *counts,
                           spine_error *err);
spine_status moe_trace_parse(const char *text, size_t len, moe_trace *out, spine_error *err);
/* The trace as text (malloc'd), or NULL when out of memory. */
char *moe_trace_to_text(const moe_trace *t);
/* Distinct layers in order of first appearance; returns how many (<= MOE_TRACE_MAX_LAYERS). */
int moe_trace_layers(const moe_trace *t, int *layers);

/* Synthetic traces: per layer a popularity order over experts (a random permutation); each of
 * `tokens` tokens per batch draws k distinct experts by Zipf(alpha) over that order; between
 * batches the order drifts by round((1 - persistence) * E) random adjacent swaps, so
 * persistence 1 keeps the hot set fixed and 0 churns it. */
typedef struct moe_trace_gen_opts {
    int layers, experts, top_k, batches, tokens;
    double alpha, persistence;
    uint64_t seed, expert_bytes;
} moe_trace_gen_opts;
spine_status moe_trace_generate(const moe_trace_gen_opts *o, moe_trace *out, spine_error *err);

/* ---- expert cache simulation ---- */
typedef enum moe_policy {
    MOE_POLICY_LIFO = 0, /* the paper's: inactive in this batch first, then last-in-first-out */
    MOE_POLICY_FIFO,
    MOE_POLICY_LRU,
    MOE_POLICY_LFU,    /* fewest uses so far, ties to the least recently used */
    MOE_POLICY_BELADY, /* offline optimum: the expert needed furthest in the future */
    MOE_POLICY_COUNT
} moe_policy;
const char *moe_policy_name(moe_policy p);
int moe_policy_parse(const char *s, moe_policy *out); /* 0 on success */

/* The expert to evict under policy p among the candidates (cand[e]), or -1 when there is none.
 * Per expert: when it was loaded, last used, how often used, its next use (Belady; INT64_MAX:
 * never), and whether the current batch needs it (active, for lifo's inactive-first). Shared by
 * the simulator and the engine's expert tier. */
int moe_policy_victim(moe_policy p, int E, const bool *cand, const int64_t *loaded_at,
                      const int64_t *last_used, const int64_t *uses, const int64_t *next_use,
                      const uint8_t *active);

typedef struct moe_cache_stats {
    uint64_t requests, hits, misses;
} moe_cache_stats;

/* Replay every layer of the trace with `slots` resident experts per layer. Within a batch the
 * active experts (count > 0) are requested in increasing id order, as experts run. */
spine_status moe_cache_simulate(const moe_trace *t, int slots, moe_policy p, moe_cache_stats *out,
                                spine_error *err);

/* ---- placement ---- */
typedef enum moe_place_policy {
    MOE_PLACE_RR = 0,
    MOE_PLACE_GREEDY,
    MOE_PLACE_ANTICORR,
    MOE_PLACE_REPLICATE,
    MOE_PLACE_COUNT
} moe_place_policy;
const char *moe_place_name(moe_place_policy p);
int moe_place_parse(const char *s, moe_place_policy *out);

/* A placement of one layer: group[e * max_copies + c] = group of copy c of expert e, -1 for no
 * copy; a token for expert e is split evenly over its copies. */
typedef struct moe_placement {
    int layer, experts, groups, max_copies;
    int *group;
} moe_placement;

typedef struct moe_place_report {
    double max_load;     /* the largest share of a batch's tokens any group got, over batches */
    double avg_max_load; /* the mean over batches of the largest group share */
    size_t batches;
} moe_place_report;

/* Fit a placement for every layer on records [0, fit_end) and evaluate on [fit_end, n).
 * out: one placement per layer (moe_trace_layers order), freed with moe_placements_free. */
spine_status moe_place(const moe_trace *t, int groups, moe_place_policy p, size_t fit_end,
                       moe_placement **out, int *nlayers, moe_place_report *rep, spine_error *err);
spine_status moe_place_evaluate(const moe_trace *t, const moe_placement *pl, int nlayers,
                                size_t from, moe_place_report *rep, spine_error *err);
void moe_placements_free(moe_placement *pl, int n);
/* Placement files: a header `spine-moe-placement 1 experts=E groups=D copies=C`, then one line
 * per layer, `layer L:` and each expert's group (copies joined by '/'). */
char *moe_placement_to_text(const moe_placement *pl, int n);
spine_status moe_placement_parse(const char *text, size_t len, moe_placement **out, int *n,
                                 spine_error *err);

#endif
