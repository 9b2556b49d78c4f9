/* spine.h: the public C API of libspine.
 *
 * What lives here: status codes and errors, the thread pool handle, loading and describing a
 * DLRM model, per-worker inference contexts, and the embedding-store interface through which
 * every table is read. What does not: internal helpers (src/), the CLI, the server.
 *
 * Ownership and threads: a spine_model is immutable once loaded and may be shared by any number
 * of threads. A spine_ctx holds one worker's preallocated scratch and is used by one thread at
 * a time. A spine_pool is a set of threads owned by whoever created it.
 */
#ifndef SPINE_SPINE_H
#define SPINE_SPINE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SPINE_VERSION_MAJOR 0
#define SPINE_VERSION_MINOR 1
#define SPINE_VERSION_PATCH 0
const char *spine_version(void);

/* ---- status and errors ---------------------------------------------------------------- */
typedef enum spine_status {
    SPINE_OK = 0,
    SPINE_ERR_INVALID = 1,     /* a bad argument or a bad request */
    SPINE_ERR_NOMEM = 2,       /* an allocation failed */
    SPINE_ERR_IO = 3,          /* the operating system refused a read, write or map */
    SPINE_ERR_FORMAT = 4,      /* a malformed file or document */
    SPINE_ERR_RANGE = 5,       /* an index outside its table */
    SPINE_ERR_UNSUPPORTED = 6, /* well formed, but not something spine does */
    SPINE_ERR_LIMIT = 7,       /* larger than a configured or built-in limit */
} spine_status;

/* Every fallible call takes an optional spine_error to explain a failure in words. */
typedef struct spine_error {
    spine_status code;
    char msg[512];
} spine_error;

const char *spine_status_name(spine_status s);

/* ---- thread pool ------------------------------------------------------------------------ */
/* A pool of n threads, the calling thread counted as one of them (n = 1 starts no thread). */
typedef struct spine_pool spine_pool;
spine_status spine_pool_create(int nthreads, spine_pool **out, spine_error *err);
void spine_pool_free(spine_pool *pool);
int spine_pool_size(const spine_pool *pool);

/* ---- embedding rows and stores ---------------------------------------------------------- */
typedef enum spine_rowtype {
    SPINE_ROW_F32 = 0,
    SPINE_ROW_F16 = 1,
    SPINE_ROW_INT8 = 2, /* dim uint8, then fp32 scale, fp32 bias (FBGEMM fused 8-bit rowwise) */
    SPINE_ROW_INT4 = 3, /* ceil(dim/2) bytes of nibbles, then fp16 scale, fp16 bias */
} spine_rowtype;

typedef enum spine_pooling { SPINE_POOL_SUM = 0, SPINE_POOL_MEAN = 1 } spine_pooling;

const char *spine_rowtype_name(spine_rowtype t);
int spine_rowtype_parse(const char *s, spine_rowtype *out); /* 0 on success */
/* Bytes one row of `dim` values occupies. */
size_t spine_row_bytes(spine_rowtype t, int dim);

/* One pooled lookup over a run of bags of one table, in CSR form: bag b reads
 * indices[offsets[b] .. offsets[b+1]), scaled by weights[] when weights is not NULL, and writes
 * dim floats at out + b * out_stride. Offsets index straight into indices and weights. */
typedef struct spine_bags {
    int32_t nbags;
    const int64_t *offsets; /* nbags + 1 entries */
    const int64_t *indices;
    const float *weights; /* NULL: unweighted */
    spine_pooling pooling;
    float *out;
    size_t out_stride; /* in floats */
} spine_bags;

/* Statistics every store reports; wrappers add their own counters on top. */
typedef struct spine_store_stats {
    uint64_t lookups;   /* bags pooled */
    uint64_t rows_read; /* rows gathered */
    uint64_t hits;      /* rows served from a faster tier (caches); 0 where there is none */
} spine_store_stats;

/* The one interface behind which every embedding table lives. Implementations: the memory
 * store (src/store/store_mem.c); caches, remote and oblivious stores wrap or replace it.
 * `lookup` must bounds-check every index and fail with SPINE_ERR_RANGE naming the position. */
typedef struct spine_store spine_store;
typedef struct spine_store_ops {
    const char *kind;
    spine_status (*lookup)(spine_store *s, const spine_bags *bags, spine_error *err);
    void (*stats)(const spine_store *s, spine_store_stats *out);
    void (*destroy)(spine_store *s);
    /* optional: pool the bags of n stores that all have this op, in one call */
    spine_status (*lookup_many)(spine_store *const *s, const spine_bags *bags, int n,
                                spine_error *err);
} spine_store_ops;

struct spine_store {
    const spine_store_ops *ops;
    char name[64];
    int64_t rows;
    int dim;
    spine_rowtype rowtype;
};

spine_status spine_store_lookup(spine_store *s, const spine_bags *bags, spine_error *err);
/* The bags of n tables in one call, bags[i] against stores[i], each checked as
 * spine_store_lookup checks it before any is read. Memory stores (plain or hot) run as one
 * multi-table kernel call (FBGEMM's): the prefetch runs on from the end of one table into the
 * start of the next, so no table but the first starts cold. Other stores are looked up one by
 * one. Results are exactly those of n spine_store_lookup calls. */
spine_status spine_store_lookup_many(spine_store *const *stores, const spine_bags *bags, int n,
                                     spine_error *err);
void spine_store_stats_get(const spine_store *s, spine_store_stats *out);
void spine_store_free(spine_store *s);

/* A memory store over rows already laid out as `rowtype` rows (rows * row_bytes bytes).
 * `data` must outlive the store; it is not copied. */
spine_status spine_store_mem_create(const char *name, const void *data, int64_t rows, int dim,
                                    spine_rowtype rowtype, spine_store **out, spine_error *err);

/* A memory store with a hot tier (RecNMP's hot-entry caching, in software): of `hot` (row
 * indices, hottest first, as `spine profile` writes them), as many as fit in budget_bytes are
 * copied into a compact table read instead of `data`; a bitmap and a rank array (1.5 bits per
 * row, cache-resident) find them. Results are bitwise those of the plain memory store; the
 * store's statistics count the rows served hot in `hits`. `data` is borrowed as above. */
spine_status spine_store_hot_create(const char *name, const void *data, int64_t rows, int dim,
                                    spine_rowtype rowtype, const int64_t *hot, size_t nhot,
                                    size_t budget_bytes, spine_store **out, spine_error *err);
/* Bytes the hot tier of a store holds (0 for stores without one). */
size_t spine_store_hot_bytes(const spine_store *s);

/* ---- DLRM models ------------------------------------------------------------------------- */
typedef enum spine_interaction { SPINE_INTERACT_DOT = 0, SPINE_INTERACT_CAT = 1 } spine_interaction;

#define SPINE_MAX_LAYERS 32

typedef struct spine_table_desc {
    char name[64];
    int64_t rows;
    spine_rowtype rowtype;
    spine_pooling pooling;
} spine_table_desc;

typedef struct spine_model_desc {
    char name[64];
    int num_dense;
    int emb_dim;
    int num_tables;
    const spine_table_desc *tables;         /* num_tables entries, owned by the model */
    int n_bottom, bottom[SPINE_MAX_LAYERS]; /* output width of each bottom layer */
    int n_top, top[SPINE_MAX_LAYERS];       /* output width of each top layer; last is 1 */
    spine_interaction interaction;
    int interaction_self;  /* dot: include the diagonal */
    int interaction_dim;   /* width of the top MLP's input */
    int lookups_per_table; /* typical bag size: a hint for generated inputs */
    uint64_t mlp_params, emb_params, emb_bytes;
    uint64_t emb_bytes_huge; /* bytes of tables placed in 2 MiB-page memory (advised) */
} spine_model_desc;

typedef struct spine_model spine_model;

/* Where embedding tables live once loaded. */
typedef enum spine_placement {
    SPINE_PLACE_AUTO = 0, /* HUGE when the tables fit in half of the available memory, else MAP */
    SPINE_PLACE_MAP = 1,  /* read in place from the mapped file: zero copy, 4 KiB pages, tables
                             may exceed RAM */
    SPINE_PLACE_HUGE = 2, /* copied once into anonymous memory on 2 MiB pages (transparent huge
                             pages): fewer TLB misses on random rows */
} spine_placement;

typedef struct spine_load_opts {
    spine_placement placement;
} spine_load_opts;

/* Load a model folder (config.json + model.safetensors). The file is mapped; MLP weights are
 * used in place, tables are placed as opts says (NULL: defaults). */
spine_status spine_model_load(const char *dir, spine_model **out, spine_error *err);
spine_status spine_model_load_opts(const char *dir, const spine_load_opts *opts, spine_model **out,
                                   spine_error *err);
void spine_model_free(spine_model *m);
const spine_model_desc *spine_model_describe(const spine_model *m);
/* The store behind table t (for statistics or direct lookups). */
spine_store *spine_model_store(const spine_model *m, int t);

/* One batch of B samples: dense [B, num_dense] row-major; sparse features as a
 * KeyedJaggedTensor: lengths [T, B] table-major, values [sum of lengths] in the same order,
 * optional per-value weights (sum pooling only). */
typedef struct spine_batch {
    int32_t batch;
    const float *dense;
    const int32_t *lengths;
    const int64_t *values;
    const float *weights;
} spine_batch;

/* Check a batch's shape against a model without running it: negative lengths, a values count
 * that does not match, weights on a mean-pooled table. Indices are checked during the run. */
spine_status spine_batch_validate(const spine_model *m, const spine_batch *b, int64_t nvalues,
                                  spine_error *err);

/* A worker's inference context: scratch for up to max_batch samples, preallocated, so that a
 * run allocates nothing. `pool` (may be NULL) parallelises each run; it is borrowed. */
typedef struct spine_ctx spine_ctx;
spine_status spine_ctx_create(const spine_model *m, int max_batch, spine_pool *pool,
                              spine_ctx **out, spine_error *err);
void spine_ctx_free(spine_ctx *c);

/* The order in which a run's lookups are issued: all of one table's bags back to back, table
 * after table (RecNMP's table-aware scheduling; the default), or sample chunk by sample chunk,
 * every table in turn, with each chunk's dense work overlapping the next chunk's lookups. */
typedef enum spine_schedule { SPINE_SCHED_TABLE = 0, SPINE_SCHED_SAMPLE = 1 } spine_schedule;
void spine_ctx_set_schedule(spine_ctx *c, spine_schedule s);
/* Tables per lookup task: each task pools its tables' bags in one multi-table call
 * (spine_store_lookup_many). 0: automatic (enough tasks for two per thread, at most 32 tables
 * each; the default); 1: a task per table. */
void spine_ctx_set_table_group(spine_ctx *c, int tables_per_task);

#define SPINE_RUN_LOGITS 1u /* write logits instead of probabilities */

/* Run a batch (any size: larger than max_batch runs in chunks). out: B floats. */
spine_status spine_ctx_run(spine_ctx *c, const spine_batch *b, float *out, unsigned flags,
                           spine_error *err);

#ifdef __cplusplus
}
#endif
#endif
