/* moe.h: the Mixture-of-Experts transformer (internal side): its configuration (Hugging Face
 * Mixtral config.json keys), a model bound to safetensors weights (Hugging Face Mixtral tensor
 * names, single file or sharded), presets with random weights, and a run context holding the
 * KV cache and activations for prefill, greedy decode and encoder passes with static (GShard
 * capacity, dense dispatch) or dynamic (sort by expert, grouped GEMM) gating. */
#ifndef SPINE_MOE_H
#define SPINE_MOE_H

#include "../base/safetensors.h"
#include "../kernels/matmul.h"

#define MOE_MAX_LAYERS 1024
#define MOE_MAX_EXPERTS 4096
#define MOE_MAX_HIDDEN 65536
#define MOE_MAX_HEAD_DIM 1024
#define MOE_MAX_VOCAB (1 << 24)
#define MOE_MAX_CONFIG_BYTES ((size_t)1 << 20)
#define MOE_MAX_STEP_TOKENS (1 << 22) /* tokens in one forward call (B x T) */

typedef struct moe_config {
    int hidden, inter, layers, heads, kv_heads, head_dim;
    int experts, top_k, vocab, max_pos, moe_every;
    int sliding_window; /* 0: none */
    double rope_theta, rms_eps;
    bool tie_embeddings, norm_topk;
    spine_dtype dtype; /* torch_dtype (informational: each tensor carries its own) */
    char model_type[32];
    char ignored[256]; /* config keys spine read past, comma-separated (for `moe info`) */
} moe_config;

spine_status moe_config_parse(const char *json, size_t len, moe_config *out, spine_error *err);
/* config.json text (malloc'd), or NULL when out of memory. */
char *moe_config_to_json(const moe_config *c);
/* Layer i has an MoE feed-forward block (else a dense SwiGLU MLP). */
static inline bool moe_layer_is_moe(const moe_config *c, int i) {
    return c->experts > 0 && (i + 1) % c->moe_every == 0;
}

typedef struct moe_ffn {
    mm_weight w1, w2, w3; /* gate [F, H], down [H, F], up [F, H] */
} moe_ffn;

typedef struct moe_layer {
    float *ln1, *ln2; /* RMSNorm weights as f32 (owned) */
    mm_weight q, k, v, o;
    bool is_moe;
    mm_weight gate;   /* router [E, H] */
    moe_ffn *experts; /* E of them (MoE) or 1 (dense) */
} moe_layer;

typedef struct moe_model {
    moe_config c;
    spine_tensors *files; /* one per safetensors shard */
    int nfiles;
    moe_layer *layers;
    mm_weight embed; /* [V, H] */
    float *norm;     /* [H] */
    mm_weight lm_head;
    uint64_t params, weight_bytes, expert_bytes;
    bool mapped; /* weights read in place from the mapped files (placement map) */
    bool panels; /* weight matrices re-laid in panels at load (matmul.h) */
    double rope_inv_freq[MOE_MAX_HEAD_DIM / 2];
} moe_model;

/* Load DIR/config.json and DIR/model.safetensors (or the shards named by
 * DIR/model.safetensors.index.json). Placement as for DLRM tables: HUGE copies weights onto
 * 2 MiB pages, MAP reads them in place, AUTO copies when they fit in half the free memory. */
spine_status moe_model_load(const char *dir, spine_placement placement, moe_model **out,
                            spine_error *err);
/* Bind a configuration to tensors (takes ownership of ts, emptied, also on failure). */
spine_status moe_model_create(const moe_config *c, spine_tensors *ts, moe_model **out,
                              spine_error *err);
void moe_model_free(moe_model *m);
/* The default copy rate of the slow expert tier: 0 (as fast as it goes) when the weights are
 * read from the mapped file, where the disk is the slow tier; 12 GB/s (a PCIe host-to-device
 * link, the paper's setting) when they sit in memory. */
#define MOE_DEFAULT_SLOW_GBPS 12.0
double moe_default_slow_gbps(const moe_model *m);
/* Fast-tier slots per MoE layer that fit a byte budget for the experts of every MoE layer
 * (--expert-budget): floor(budget / (MoE layers x bytes of one expert)), at most the experts
 * per layer; 0 when the budget holds less than one expert per MoE layer. */
int moe_slots_for_budget(const moe_model *m, uint64_t budget);
/* Bytes of weights one token touches in a decode step with top_k experts per MoE layer. */
uint64_t moe_decode_bytes_per_token(const moe_model *m);

/* ---- presets (moe_presets.c) ---- */
extern const char *const moe_preset_names[];
spine_status moe_preset_config(const char *name, moe_config *out, spine_error *err);
/* Random weights for a configuration (deterministic for a seed, any thread count): uniform with
 * the variance of N(0, 1/fan_in) for matrices, 1 + small noise for norms. */
spine_status moe_gen_tensors(const moe_config *c, spine_dtype dt, uint64_t seed, spine_pool *pool,
                             spine_progress_fn progress, void *parg, spine_tensors *out,
                             spine_error *err);

/* Skew routing for benchmarks of expert buffering and placement: in every MoE layer, scale the
 * router row of the expert at popularity rank r (a per-layer random order) by (r + 1)^-alpha.
 * Larger rows give their expert's logit more spread, so it wins top-k more often. */
void moe_skew_router(spine_tensors *ts, const moe_config *c, double alpha, uint64_t seed);

/* ---- running (moe_run.c, moe_gating.c) ---- */
typedef enum moe_gating { MOE_GATING_DYNAMIC = 0, MOE_GATING_STATIC = 1 } moe_gating;

typedef struct moe_report {
    uint64_t assignments;    /* token-expert pairs routed (k per token per MoE layer) */
    uint64_t dropped;        /* of them, dropped for lack of capacity (static) */
    uint64_t tokens_dropped; /* tokens whose every assignment in a layer was dropped */
    uint64_t slots_computed; /* expert rows computed (padding included) */
    uint64_t act_bytes_peak; /* largest MoE-layer activation footprint of any step */
    uint64_t attn_ns;        /* wall time in attention (scores, softmax, weighted values) */
} moe_report;

typedef struct moe_run_opts {
    int max_batch, max_seq;
    moe_gating gating;
    double capacity_factor; /* static: capacity = ceil(cf * k * S / E) */
    bool encoder;           /* bidirectional attention, no cache carried between calls */
    bool logits_all;        /* logits for every position, not just the last */
    /* expert buffering: 0 keeps every expert resident; K > 0 runs experts from K fast-tier
     * slots per MoE layer, filled from the weights on a miss (moe_tier.c) */
    int expert_slots;
    int expert_policy; /* a moe_policy (moe_trace.h) other than Belady */
    double slow_gbps;  /* throttle slow-tier copies to this rate (0: unthrottled) */
    /* predict the next MoE layer's experts from this layer's hidden state and report the
     * prediction's precision; with expert_slots, start loading them early */
    bool expert_prefetch;
    /* expert parallelism: when set, each MoE layer's experts run on the worker groups of this
     * placement (moe_trace.h), one pool task per group, a replicated expert's tokens split over
     * its copies; one entry per MoE layer. Borrowed. */
    const struct moe_placement *placement;
    int n_placement;
} moe_run_opts;

typedef struct moe_tier_stats {
    int slots;
    uint64_t hits, misses, bytes_moved, fast_bytes, expert_bytes_all, prefetched;
    /* next-layer prediction: predicted experts that were then used, predicted, used */
    uint64_t pred_hits, pred_total, actual_total;
    double load_s;
} moe_tier_stats;

typedef struct moe_ctx moe_ctx;
spine_status moe_ctx_create(const moe_model *m, const moe_run_opts *o, spine_pool *pool,
                            moe_ctx **out, spine_error *err);
void moe_ctx_free(moe_ctx *c);
/* Forget the cached sequences (start over). */
void moe_ctx_reset(moe_ctx *c);
int moe_ctx_pos(const moe_ctx *c);
/* Run B sequences of T new tokens each (tokens [B, T], row-major) at the current position.
 * Writes logits [B, V] for the last position, or [B, T, V] with logits_all. Token ids are
 * checked against the vocabulary, positions against max_seq / max_position_embeddings. */
spine_status moe_forward(moe_ctx *c, const int64_t *tokens, int B, int T, float *logits,
                         spine_error *err);
const moe_report *moe_ctx_report(const moe_ctx *c);
/* The weight-product context: its statistics, and the switch for its per-shape ones
 * (mm_ctx_track_shapes, shapes_on). */
mm_ctx *moe_ctx_mm(moe_ctx *c);
/* Expert-parallel counters: assignment rows run by each worker group so far (groups entries;
 * NULL without a placement). */
const uint64_t *moe_ctx_group_rows(const moe_ctx *c, int *groups);
/* Expert-tier counters (all zero without expert_slots). */
void moe_ctx_tier_stats(const moe_ctx *c, moe_tier_stats *out);
/* Record routing into a trace (moe_trace.h; initialised with this model's experts) from the
 * next forward on: one record per (forward call, MoE layer). NULL stops recording. */
struct moe_trace;
void moe_ctx_set_trace(moe_ctx *c, struct moe_trace *t);
/* Per-MoE-layer dropped assignments of the last forward (for cross-checks), [layers]. */
const uint64_t *moe_ctx_last_drops(const moe_ctx *c);

/* ---- token files (moe_tokens.c) ----
 * Text, one sequence per line, token ids separated by spaces, tabs or commas; blank lines and
 * lines starting with '#' are skipped. Every sequence must have the same length. Ids are
 * checked against the vocabulary when the model runs, not here (they must fit in int64). */
#define MOE_MAX_TOKEN_FILE ((size_t)256 << 20)
typedef struct moe_tokens {
    int64_t *ids; /* [n_seq, len] */
    int n_seq, len;
} moe_tokens;
/* Parse at most max_seq sequences (0: all). Errors name the line and column. */
spine_status moe_tokens_parse(const char *text, size_t n, int max_seq, moe_tokens *out,
                              spine_error *err);
void moe_tokens_free(moe_tokens *t);

#endif
