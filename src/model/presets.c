/* presets.c: the built-in model shapes (tiny, DeepRecSys RMC1-3, Criteo Kaggle DLRM) and
 * random weight generation, deterministic for a seed whatever the number of threads. */
#include "dlrm.h"

#include "../base/pool.h"
#include "../kernels/kernels.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

const char *const dlrm_preset_names[] = {"tiny", "rmc1", "rmc2", "rmc3", "dlrm-kaggle", NULL};

/* Criteo Kaggle display-advertising challenge: the cardinalities of the 26 categorical
 * features, as facebookresearch/dlrm's preprocessing counts them. */
static const int64_t kaggle_rows[26] = {
    1460, 583,   10131227, 2202608, 305,  24,   12517, 633,     3,  93145, 5683,   8351593, 3194,
    27,   14992, 5461306,  10,      5652, 2173, 4,     7046547, 18, 15,    286181, 105,     142572};

/* tiny: Criteo-shaped (13 dense, 26 tables) so that TSV inference runs on it; tables from a
 * single row upwards. */
static const int64_t tiny_rows[26] = {1,   2, 3,  5,   8,   13,  21,  34,  55, 89, 144, 233, 377,
                                      610, 7, 11, 100, 200, 300, 400, 500, 16, 32, 64,  128, 999};

typedef struct preset {
    const char *name;
    int num_dense, dim, ntables;
    int64_t rows; /* rows per table when rows_list is NULL */
    const int64_t *rows_list;
    int nbot, bot[8], ntop, top[8];
    int lookups;
} preset;

static const preset presets[] = {
    {"tiny", 13, 8, 26, 0, tiny_rows, 2, {32, 8}, 3, {32, 16, 1}, 3},
    {"rmc1", 128, 32, 8, 4000000, NULL, 2, {64, 32}, 3, {256, 64, 1}, 80},
    {"rmc2", 256, 64, 32, 500000, NULL, 2, {128, 64}, 3, {128, 64, 1}, 120},
    {"rmc3", 2560, 32, 10, 2000000, NULL, 3, {1024, 256, 32}, 3, {512, 256, 1}, 20},
    {"dlrm-kaggle", 13, 16, 26, 0, kaggle_rows, 4, {512, 256, 64, 16}, 3, {512, 256, 1}, 1},
};

spine_status dlrm_preset_config(const dlrm_gen_opts *o, dlrm_config *c, spine_error *err) {
    memset(c, 0, sizeof *c);
    const preset *p = NULL;
    for (size_t i = 0; i < SPINE_ARRAY_LEN(presets); i++)
        if (strcmp(presets[i].name, o->preset) == 0) p = &presets[i];
    if (!p)
        return spine_fail(err, SPINE_ERR_INVALID,
                          "unknown preset '%s' (tiny, rmc1, rmc2, rmc3, dlrm-kaggle)", o->preset);
    double scale = o->rows_scale > 0 ? o->rows_scale : 1.0;
    if (!(scale <= 1024.0))
        return spine_fail(err, SPINE_ERR_INVALID, "rows scale %g outside (0, 1024]", scale);
    spine_table_desc *t = calloc((size_t)p->ntables, sizeof *t);
    if (!t) return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    snprintf(c->name, sizeof c->name, "%s", p->name);
    c->num_dense = p->num_dense;
    c->emb_dim = p->dim;
    c->num_tables = p->ntables;
    c->tables = t;
    c->n_bottom = p->nbot;
    memcpy(c->bottom, p->bot, sizeof p->bot);
    c->n_top = p->ntop;
    memcpy(c->top, p->top, sizeof p->top);
    c->interaction = SPINE_INTERACT_DOT;
    c->lookups_per_table = p->lookups;
    for (int i = 0; i < p->ntables; i++) {
        snprintf(t[i].name, sizeof t[i].name, "emb_l.%d", i);
        int64_t rows = p->rows_list ? p->rows_list[i] : p->rows;
        double r = floor((double)rows * scale + 0.5);
        t[i].rows = r < 1 ? 1 : r > (double)DLRM_MAX_ROWS ? DLRM_MAX_ROWS : (int64_t)r;
        t[i].rowtype = o->has_rowtype ? o->rowtype : SPINE_ROW_F32;
        t[i].pooling = SPINE_POOL_SUM;
    }
    spine_status st = dlrm_config_finish(c, err);
    if (st) dlrm_config_free(c);
    return st;
}

/* ---- weights ---- */

#define GEN_CHUNK_ROWS 8192

typedef struct gen_job {
    const dlrm_config *c;
    spine_tensors *ts;
    size_t first_emb; /* index of emb_l.0 in ts */
    uint64_t seed;
    int ntasks;
    int64_t *task_table, *task_row0; /* per task */
    atomic_uint_fast64_t done_bytes;
    uint64_t total_bytes;
    spine_progress_fn progress;
    void *progress_arg;
} gen_job;

static void gen_emb_task(void *arg, int task, int thread) {
    gen_job *j = arg;
    int t = (int)j->task_table[task];
    int64_t r0 = j->task_row0[task];
    const spine_table_desc *td = &j->c->tables[t];
    int64_t r1 = SPINE_MIN(td->rows, r0 + GEN_CHUNK_ROWS);
    int dim = j->c->emb_dim;
    size_t rb = spine_row_bytes(td->rowtype, dim);
    spine_tensor *ten = &j->ts->t[j->first_emb + (size_t)t];
    uint8_t *dst = (uint8_t *)ten->owned;
    spine_rng rng;
    spine_rng_seed(&rng, spine_hash64(j->seed ^ spine_hash64(((uint64_t)t << 40) + (uint64_t)r0)));
    /* DLRM's initialisation: uniform(-sqrt(1/rows), sqrt(1/rows)) */
    float a = (float)sqrt(1.0 / (double)td->rows);
    float row[DLRM_MAX_DIM];
    for (int64_t r = r0; r < r1; r++) {
        for (int d = 0; d < dim; d++) row[d] = (2.0f * spine_rng_uniform(&rng) - 1.0f) * a;
        sls_encode_row(td->rowtype, row, dim, dst + (size_t)r * rb);
    }
    uint64_t done =
        atomic_fetch_add(&j->done_bytes, (uint64_t)(r1 - r0) * rb) + (uint64_t)(r1 - r0) * rb;
    if (thread == 0 && j->progress) j->progress(j->progress_arg, done, j->total_bytes);
}

static spine_status add_mlp(spine_tensors *ts, const char *kind, int in, const int *w, int n,
                            uint64_t seed, spine_error *err) {
    for (int i = 0; i < n; i++) {
        char name[64];
        spine_rng rng;
        spine_rng_seed(&rng, spine_hash64(seed ^ spine_hash64((uint64_t)(kind[0] * 1000 + i))));
        size_t nw = (size_t)w[i] * (size_t)in;
        float *wt = spine_alloc_aligned(nw * 4), *bs = spine_alloc_aligned((size_t)w[i] * 4);
        if (!wt || !bs) {
            spine_free_aligned(wt);
            spine_free_aligned(bs);
            return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
        }
        /* DLRM's initialisation: W ~ N(0, sqrt(2/(in+out))), b ~ N(0, sqrt(1/out)) */
        float sw = (float)sqrt(2.0 / (double)(in + w[i])), sb = (float)sqrt(1.0 / (double)w[i]);
        for (size_t k = 0; k < nw; k++) wt[k] = spine_rng_normal(&rng) * sw;
        for (int k = 0; k < w[i]; k++) bs[k] = spine_rng_normal(&rng) * sb;
        int64_t sh[2] = {w[i], in};
        dlrm_tensor_name(name, sizeof name, kind, 2 * i, "weight");
        if (!st_add_owned(ts, name, SPINE_DT_F32, 2, sh, wt, nw * 4)) {
            spine_free_aligned(wt);
            spine_free_aligned(bs);
            return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
        }
        dlrm_tensor_name(name, sizeof name, kind, 2 * i, "bias");
        if (!st_add_owned(ts, name, SPINE_DT_F32, 1, sh, bs, (size_t)w[i] * 4)) {
            spine_free_aligned(bs);
            return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
        }
        in = w[i];
    }
    return SPINE_OK;
}

spine_status dlrm_gen_tensors(const dlrm_config *c, const dlrm_gen_opts *o, spine_tensors *ts,
                              spine_error *err) {
    memset(ts, 0, sizeof *ts);
    spine_status st = add_mlp(ts, "bot_l", c->num_dense, c->bottom, c->n_bottom, o->seed, err);
    if (!st) st = add_mlp(ts, "top_l", c->interaction_dim, c->top, c->n_top, o->seed + 1, err);
    if (st) {
        st_free(ts);
        return st;
    }
    gen_job j = {.c = c,
                 .ts = ts,
                 .first_emb = ts->n,
                 .seed = o->seed,
                 .progress = o->progress,
                 .progress_arg = o->progress_arg};
    int64_t ntasks = 0;
    for (int t = 0; t < c->num_tables; t++) {
        const spine_table_desc *td = &c->tables[t];
        size_t rb = spine_row_bytes(td->rowtype, c->emb_dim), bytes;
        if (!spine_mul_size((size_t)td->rows, rb, &bytes)) {
            st_free(ts);
            return spine_fail(err, SPINE_ERR_LIMIT, "table %d is too large", t);
        }
        bool huge = bytes >= ((size_t)2 << 20);
        void *data = huge ? spine_alloc_huge(bytes) : spine_alloc_aligned(bytes);
        char name[64];
        dlrm_tensor_name(name, sizeof name, "emb_l", t, "weight");
        int64_t sh[2] = {td->rows, td->rowtype <= SPINE_ROW_F16 ? c->emb_dim : (int64_t)rb};
        spine_dtype dt = td->rowtype == SPINE_ROW_F32   ? SPINE_DT_F32
                         : td->rowtype == SPINE_ROW_F16 ? SPINE_DT_F16
                                                        : SPINE_DT_U8;
        spine_tensor *ten = !data  ? NULL
                            : huge ? st_add_owned_huge(ts, name, dt, 2, sh, data, bytes)
                                   : st_add_owned(ts, name, dt, 2, sh, data, bytes);
        if (!ten) {
            if (huge)
                spine_free_huge(data, bytes);
            else
                spine_free_aligned(data);
            st_free(ts);
            return spine_fail(err, SPINE_ERR_NOMEM,
                              "cannot allocate %zu bytes for table %d (try --rows-scale)", bytes,
                              t);
        }
        j.total_bytes += bytes;
        ntasks += (td->rows + GEN_CHUNK_ROWS - 1) / GEN_CHUNK_ROWS;
    }
    if (ntasks > INT32_MAX) {
        st_free(ts);
        return spine_fail(err, SPINE_ERR_LIMIT, "model too large to generate");
    }
    j.task_table = malloc((size_t)ntasks * sizeof *j.task_table);
    j.task_row0 = malloc((size_t)ntasks * sizeof *j.task_row0);
    if (!j.task_table || !j.task_row0) {
        free(j.task_table);
        free(j.task_row0);
        st_free(ts);
        return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    }
    int64_t k = 0;
    for (int t = 0; t < c->num_tables; t++)
        for (int64_t r = 0; r < c->tables[t].rows; r += GEN_CHUNK_ROWS) {
            j.task_table[k] = t;
            j.task_row0[k++] = r;
        }
    spine_pool_run(o->pool, (int)ntasks, gen_emb_task, &j);
    if (o->progress) o->progress(o->progress_arg, j.total_bytes, j.total_bytes);
    free(j.task_table);
    free(j.task_row0);
    return SPINE_OK;
}

spine_status dlrm_gen_model(const dlrm_gen_opts *o, spine_model **out, spine_error *err) {
    dlrm_config c;
    spine_status st = dlrm_preset_config(o, &c, err);
    if (st) return st;
    spine_tensors ts;
    st = dlrm_gen_tensors(&c, o, &ts, err);
    if (st) {
        dlrm_config_free(&c);
        return st;
    }
    return dlrm_model_create(&c, &ts, SPINE_PLACE_HUGE, out, err);
}

spine_status dlrm_gen_write(const dlrm_gen_opts *o, const char *dir, spine_error *err) {
    dlrm_config c;
    spine_status st = dlrm_preset_config(o, &c, err);
    if (st) return st;
    if ((st = spine_mkdir_p(dir, err))) {
        dlrm_config_free(&c);
        return st;
    }
    spine_tensors ts;
    st = dlrm_gen_tensors(&c, o, &ts, err);
    char path[4096];
    if (!st) {
        char meta[256];
        snprintf(
            meta, sizeof meta,
            "{\"format\":\"pt\",\"generator\":\"spine %s\",\"preset\":\"%s\",\"seed\":\"%llu\"}",
            spine_version(), o->preset, (unsigned long long)o->seed);
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        st = st_write(path, &ts, meta, o->write_progress, o->write_progress_arg, err);
        st_free(&ts);
    }
    if (!st) {
        char *json = dlrm_config_to_json(&c);
        snprintf(path, sizeof path, "%s/config.json", dir);
        st = json ? spine_write_file(path, json, strlen(json), err)
                  : spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
        free(json);
    }
    dlrm_config_free(&c);
    return st;
}
