/* dlrm.h: the DLRM model (internal side): its configuration (config.json), building a model
 * from a configuration and a tensor collection, presets and random generation. */
#ifndef SPINE_DLRM_H
#define SPINE_DLRM_H

#include "../base/safetensors.h"

/* A configuration is a spine_model_desc whose tables array is owned (malloc). */
typedef spine_model_desc dlrm_config;

#define DLRM_MAX_TABLES 4096
#define DLRM_MAX_DIM 4096
#define DLRM_MAX_WIDTH 65536
#define DLRM_MAX_ROWS ((int64_t)1 << 40)
#define DLRM_MAX_CONFIG_BYTES ((size_t)4 << 20)

spine_status dlrm_config_parse(const char *json, size_t len, dlrm_config *out, spine_error *err);
/* Check consistency and fill the derived fields (interaction_dim, parameter counts). */
spine_status dlrm_config_finish(dlrm_config *c, spine_error *err);
void dlrm_config_free(dlrm_config *c);
/* config.json text for a configuration (malloc'd, NUL-terminated), or NULL when out of memory. */
char *dlrm_config_to_json(const dlrm_config *c);

/* Build a model; takes ownership of cfg's tables and of ts (both emptied), also on failure. */
spine_status dlrm_model_create(dlrm_config *cfg, spine_tensors *ts, spine_placement placement,
                               spine_model **out, spine_error *err);

/* Hot tiers (RecNMP's hot-entry profiling + memory-side cache, in software). counts[t][row] is
 * how often a profile saw each row; rows seen at least twice compete, hottest first across all
 * tables, for budget_bytes in total; each table's store is replaced by a hot store. Call before
 * the model serves. */
spine_status dlrm_model_set_hot(spine_model *m, uint32_t *const *counts, size_t budget_bytes,
                                spine_error *err);
/* The selection behind it: lists[t] (malloc'd; NULL where none) gets the per[t] rows of table t
 * that a tier of budget_bytes in total holds, hottest first. */
spine_status dlrm_hot_lists(const spine_model_desc *d, uint32_t *const *counts, size_t budget_bytes,
                            int64_t **lists, size_t *per, spine_error *err);

/* Tensor names, following the facebookresearch/dlrm state_dict (Linear layers at even
 * positions of nn.Sequential, activations between them). */
void dlrm_tensor_name(char *buf, size_t n, const char *kind, int layer, const char *what);

/* ---- presets and generation (presets.c) ---- */
typedef struct dlrm_gen_opts {
    const char *preset;
    double rows_scale; /* multiplies every table's rows (at least 1 row each) */
    int has_rowtype;
    spine_rowtype rowtype; /* overrides the preset's table dtype when has_rowtype */
    uint64_t seed;
    spine_pool *pool;           /* parallel generation (may be NULL) */
    spine_progress_fn progress; /* may be NULL: generating the weights */
    void *progress_arg;
    spine_progress_fn write_progress; /* may be NULL: writing them (dlrm_gen_write) */
    void *write_progress_arg;
} dlrm_gen_opts;

/* The built-in default model: RMC2's shape with 25,000 rows per table (205 MB), seed 1. */
#define DLRM_DEFAULT_PRESET "rmc2"
#define DLRM_DEFAULT_ROWS_SCALE 0.05
#define DLRM_DEFAULT_SEED 1

/* The names of the presets, NULL-terminated. */
extern const char *const dlrm_preset_names[];
spine_status dlrm_preset_config(const dlrm_gen_opts *o, dlrm_config *out, spine_error *err);
/* Random weights for a configuration, deterministic for a seed whatever the thread count. */
spine_status dlrm_gen_tensors(const dlrm_config *c, const dlrm_gen_opts *o, spine_tensors *out,
                              spine_error *err);
/* Generate a model in memory (preset -> config -> tensors -> model). */
spine_status dlrm_gen_model(const dlrm_gen_opts *o, spine_model **out, spine_error *err);
/* Generate and write a model folder (config.json + model.safetensors). */
spine_status dlrm_gen_write(const dlrm_gen_opts *o, const char *dir, spine_error *err);

/* ---- random inputs (inputs.c): for benchmarks, demos and tests ---- */
typedef struct dlrm_inputs {
    spine_batch batch;
    float *dense;
    int32_t *lengths;
    int64_t *values;
    float *weights;
    int64_t nvalues;
} dlrm_inputs;

/* How indices are drawn: uniformly (alpha 0), or Zipf(alpha) over ranks that an affine
 * permutation per table scatters across its rows (hot rows are not the first rows). */
typedef struct dlrm_index_dist {
    double alpha;
    uint64_t seed; /* of the permutation: the same for a trace and the inputs it profiles */
    /* Only Zipf ranks in [rank_lo, rank_hi) (rank 0 the hottest; rank_hi 0: the table's rows),
     * drawn by rejection: the rows a hot tier would hold, or those it would leave, apart. */
    uint64_t rank_lo, rank_hi;
} dlrm_index_dist;
/* The permutation of table t's rows under dist: row(rank k) = (a k + b) mod n, gcd(a, n) = 1. */
typedef struct dlrm_perm {
    uint64_t a, b, n;
} dlrm_perm;
void dlrm_perm_init(const dlrm_index_dist *dist, int t, int64_t rows, dlrm_perm *p);
static inline int64_t dlrm_perm_row(const dlrm_perm *p, uint64_t k) {
    return (int64_t)(((unsigned __int128)p->a * k + p->b) % p->n);
}

/* ---- hot-entry profiling (profile.c) ---- */
/* Temporal locality: each index of a table, with probability p, repeats one of that table's
 * last 4096 indices (uniformly), instead of its own draw. Table-major values. */
void dlrm_trace_locality(const spine_model_desc *d, int32_t batch, int64_t *values,
                         const int32_t *lengths, double p, spine_rng *rng);
/* Add a batch's row reads to counts[t][row] (saturating); every index is checked. */
spine_status dlrm_profile_count(const spine_model_desc *d, const spine_batch *b, int64_t nvalues,
                                uint32_t *const *counts, spine_error *err);
spine_status dlrm_profile_write(const char *path, const spine_model_desc *d,
                                uint32_t *const *counts, spine_error *err);
/* Read a profile into counts (allocated by the caller, rows per table), checked against d. */
spine_status dlrm_profile_from_tensors(const spine_tensors *ts, const spine_model_desc *d,
                                       uint32_t **counts, spine_error *err);
spine_status dlrm_profile_read(const char *path, const spine_model_desc *d, uint32_t **counts,
                               spine_error *err);
/* The share of the profiled lookups a hot tier of each budget (MB) would serve. */
spine_status dlrm_profile_coverage(const spine_model_desc *d, uint32_t *const *counts,
                                   const double *budgets_mb, int nb, double *hit_rate,
                                   spine_error *err);

/* B samples, `lookups` indices per bag from dist (NULL: uniform), dense in [0, 1). */
spine_status dlrm_inputs_random(const spine_model_desc *d, int32_t batch, int lookups,
                                bool weighted, const dlrm_index_dist *dist, spine_rng *rng,
                                dlrm_inputs *out, spine_error *err);
void dlrm_inputs_free(dlrm_inputs *in);
#endif
