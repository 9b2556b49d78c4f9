/* cmd_bench_sls.c: `spine bench sls`: pooled embedding lookups alone (SparseLengthsSum over T
 * tables, every row type), rows/s and the fraction of this machine's random-read limit for
 * that row size, measured in the same run; --indices-out writes the indices so that
 * bench/sls_torch.py runs PyTorch's nn.EmbeddingBag on the same lookups. */
#include "cli.h"

#include "../base/pool.h"
#include "../kernels/kernels.h"
#include "../kernels/membw.h"
#include "../model/dlrm.h"

#include <stdio.h>
#include <stdlib.h>

#define NBATCHES 8 /* distinct index sets cycled, so one batch's rows do not stay cached */

typedef struct fill_arg {
    uint8_t *data;
    int64_t rows;
    int dim;
    spine_rowtype rt;
    size_t rb;
    int chunks;
} fill_arg;

static void fill_task(void *arg, int task, int thread) {
    (void)thread;
    fill_arg *a = arg;
    int64_t per = (a->rows + a->chunks - 1) / a->chunks, r0 = task * per;
    int64_t r1 = SPINE_MIN(a->rows, r0 + per);
    float row[4096];
    spine_rng r;
    spine_rng_seed(&r, 77 + (uint64_t)task);
    for (int64_t i = r0; i < r1; i++) {
        for (int d = 0; d < a->dim; d++) row[d] = spine_rng_uniform(&r) - 0.5f;
        sls_encode_row(a->rt, row, a->dim, a->data + (size_t)i * a->rb);
    }
}

typedef struct run_arg {
    spine_store **stores;
    int tables, chunks;
    int32_t batch;
    const int64_t *offsets; /* [tables][batch + 1] for the current index set */
    const int64_t *values;
    float *out; /* [threads][batch + 2][dim]: each thread's bags land in its own part */
    int dim;
    spine_status st;
    bool multi; /* a task per thread, its tables in one spine_store_lookup_many call */
} run_arg;

/* task g of `chunks`: every bag of its share of the tables, 64 tables per call at most */
static void run_multi(run_arg *a, int g, int thread) {
    int per = (a->tables + a->chunks - 1) / a->chunks, g0 = g * per,
        g1 = SPINE_MIN(a->tables, g0 + per);
    int32_t nb = a->batch;
    spine_bags bags[64];
    for (int t0 = g0; t0 < g1; t0 += 64) {
        int k = SPINE_MIN(64, g1 - t0);
        for (int t = 0; t < k; t++)
            bags[t] = (spine_bags){.nbags = nb,
                                   .offsets = a->offsets + (size_t)(t0 + t) * (a->batch + 1),
                                   .indices = a->values,
                                   .pooling = SPINE_POOL_SUM,
                                   .out = a->out + (size_t)thread * (a->batch + 2) * a->dim,
                                   .out_stride = (size_t)a->dim};
        spine_error e;
        if (spine_store_lookup_many(a->stores + t0, bags, k, &e))
            a->st = e.code ? e.code : SPINE_ERR_INVALID;
    }
}

static void run_task(void *arg, int task, int thread) {
    run_arg *a = arg;
    if (a->multi) {
        run_multi(a, task, thread);
        return;
    }
    int t = task / a->chunks, c = task % a->chunks;
    int32_t per = (a->batch + a->chunks - 1) / a->chunks, b0 = c * per;
    int32_t nb = SPINE_MIN(a->batch, b0 + per) - b0;
    if (nb <= 0) return;
    const int64_t *off = a->offsets + (size_t)t * (a->batch + 1) + b0;
    spine_bags bags = {.nbags = nb,
                       .offsets = off,
                       .indices = a->values,
                       .pooling = SPINE_POOL_SUM,
                       .out = a->out + (size_t)thread * (per + 1) * a->dim,
                       .out_stride = (size_t)a->dim};
    spine_error e;
    if (spine_store_lookup(a->stores[t], &bags, &e)) a->st = e.code ? e.code : SPINE_ERR_INVALID;
}

int cmd_bench_sls(int argc, char **argv) {
    cli_opt o[] = {
        {"tables", true, "tables (default 8)", NULL},
        {"rows", true, "rows per table (default 1000000)", NULL},
        {"dim", true, "embedding dim (default 64)", NULL},
        {"rowtype", true, "f32 (default) | f16 | int8 | int4", NULL},
        {"batch", true, "bags per table per run (default 256)", NULL},
        {"lookups", true, "indices per bag (default 80)", NULL},
        {"zipf", true, "Zipf skew of the indices (default 0: uniform)", NULL},
        {"threads", true, "threads (default 2)", NULL},
        {"seconds", true, "per measurement (default 2)", NULL},
        {"repeat", true, "measurements; the median is reported (default 3)", NULL},
        {"indices-out", true, "write the index sets as a batch file (for bench/sls_torch.py)",
         NULL},
        {"multi", false, "all tables of a chunk in one multi-table call (FBGEMM's way)", NULL},
        {"json", false, "one JSON object", NULL},
        {"help", false, "this text", NULL},
    };
    int n = (int)SPINE_ARRAY_LEN(o), npos;
    if (cli_parse("bench sls", argc, argv, o, n, NULL, 0, &npos)) return 2;
    if (cli_get(o, n, "help")) {
        cli_usage("usage: spine bench sls [--tables 8 --rows 1000000 --dim 64 --rowtype f32]", o,
                  n);
        return 0;
    }
    long long T = 8, rows = 1000000, dim = 64, batch = 256, lookups = 80, threads = 2, repeat = 3;
    double alpha = 0, seconds = 2;
    const char *v;
    spine_rowtype rt = SPINE_ROW_F32;
    if ((v = cli_get(o, n, "tables")) && !cli_int("--tables", v, 1, 1024, &T)) return 2;
    if ((v = cli_get(o, n, "rows")) && !cli_int("--rows", v, 1, (long long)1 << 34, &rows))
        return 2;
    if ((v = cli_get(o, n, "dim")) && !cli_int("--dim", v, 1, 4096, &dim)) return 2;
    if ((v = cli_get(o, n, "batch")) && !cli_int("--batch", v, 1, 1 << 20, &batch)) return 2;
    if ((v = cli_get(o, n, "lookups")) && !cli_int("--lookups", v, 1, 100000, &lookups)) return 2;
    if ((v = cli_get(o, n, "threads")) && !cli_int("--threads", v, 1, 256, &threads)) return 2;
    if ((v = cli_get(o, n, "repeat")) && !cli_int("--repeat", v, 1, 99, &repeat)) return 2;
    if ((v = cli_get(o, n, "zipf")) && !cli_double("--zipf", v, 0, 5, &alpha)) return 2;
    if ((v = cli_get(o, n, "seconds")) && !cli_double("--seconds", v, 0.01, 600, &seconds))
        return 2;
    if ((v = cli_get(o, n, "rowtype")) && spine_rowtype_parse(v, &rt)) {
        fprintf(stderr, "spine bench sls: --rowtype must be f32, f16, int8 or int4\n");
        return 2;
    }
    size_t rb = spine_row_bytes(rt, (int)dim), tbytes;
    if (!spine_mul_size((size_t)rows, rb, &tbytes)) {
        fprintf(stderr, "spine bench sls: tables too large\n");
        return 2;
    }
    spine_error err = {0};
    spine_pool *pool = NULL;
    int rc = 1;
    spine_table_desc *desc = calloc((size_t)T, sizeof *desc);
    uint8_t **data = calloc((size_t)T, sizeof *data);
    spine_store **stores = calloc((size_t)T, sizeof *stores);
    int64_t *offsets = malloc((size_t)NBATCHES * T * (batch + 1) * sizeof *offsets);
    dlrm_inputs sets[NBATCHES] = {0};
    float *out = NULL;
    size_t lim_bytes = (size_t)1 << 30; /* the limit probe's own buffer, far beyond any LLC */
    uint8_t *lim_buf = spine_alloc_huge(lim_bytes);
    if (!lim_buf) {
        spine_fail(&err, SPINE_ERR_NOMEM, "cannot allocate the 1 GiB probe buffer");
        goto fail_msg;
    }
    for (size_t i = 0; i < lim_bytes; i += 4096) lim_buf[i] = (uint8_t)i;
    if (!desc || !data || !stores || !offsets || spine_pool_create((int)threads, &pool, &err))
        goto fail_msg;
    cli_progress prog = {.label = "filling tables", .last_decile = -1};
    for (int t = 0; t < T; t++) {
        data[t] = spine_alloc_huge(tbytes);
        if (!data[t]) {
            spine_fail(&err, SPINE_ERR_NOMEM, "cannot allocate %zu bytes for table %d", tbytes, t);
            goto fail_msg;
        }
        fill_arg fa = {data[t], rows, (int)dim, rt, rb, 64};
        spine_pool_run(pool, fa.chunks, fill_task, &fa);
        cli_progress_cb(&prog, (uint64_t)(t + 1) * tbytes, (uint64_t)T * tbytes);
        snprintf(desc[t].name, sizeof desc[t].name, "t%d", t);
        desc[t].rows = rows;
        desc[t].rowtype = rt;
        if (spine_store_mem_create(desc[t].name, data[t], rows, (int)dim, rt, &stores[t], &err))
            goto fail_msg;
    }
    spine_model_desc d = {
        .num_dense = 1, .emb_dim = (int)dim, .num_tables = (int)T, .tables = desc};
    spine_rng rng;
    spine_rng_seed(&rng, 12345);
    dlrm_index_dist dist = {alpha, 1};
    for (int s = 0; s < NBATCHES; s++) {
        if (dlrm_inputs_random(&d, (int32_t)batch, (int)lookups, false, alpha > 0 ? &dist : NULL,
                               &rng, &sets[s], &err))
            goto fail_msg;
        for (int t = 0; t < T; t++) /* CSR offsets into the set's table-major values */
            for (int b = 0; b <= batch; b++)
                offsets[((size_t)s * T + t) * (batch + 1) + b] = ((int64_t)t * batch + b) * lookups;
    }
    int chunks = (int)SPINE_MAX(1, threads);
    out = malloc((size_t)threads * ((size_t)batch + 2) * (size_t)dim * sizeof *out);
    if (!out) goto fail_msg;
    double *rates = calloc((size_t)repeat, sizeof *rates),
           *lim = calloc((size_t)repeat, sizeof *lim);
    if (!rates || !lim) {
        free(rates), free(lim);
        goto fail_msg;
    }
    for (int r = 0; r < repeat && rc; r++) {
        /* the limit and the kernel, interleaved: this machine drifts within minutes */
        if (membw_random(pool, (int)threads, lim_buf, lim_bytes, rb, seconds / 2, &lim[r], &err))
            break;
        uint64_t runs = 0;
        double t0 = spine_now(), t;
        run_arg a = {.stores = stores,
                     .tables = (int)T,
                     .chunks = chunks,
                     .batch = (int32_t)batch,
                     .out = out,
                     .dim = (int)dim,
                     .multi = cli_get(o, n, "multi") != NULL};
        do {
            int s = (int)(runs % NBATCHES);
            a.offsets = offsets + (size_t)s * T * (batch + 1);
            a.values = sets[s].values;
            spine_pool_run(pool, a.multi ? chunks : (int)T * chunks, run_task, &a);
            runs++;
            t = spine_now() - t0;
        } while (t < seconds && a.st == SPINE_OK);
        if (a.st) {
            spine_fail(&err, a.st, "lookup failed");
            break;
        }
        rates[r] = (double)runs * (double)batch * (double)lookups * (double)T / t;
        if (r == repeat - 1) rc = 0;
    }
    if (!rc) {
        spine_sort_doubles(rates, (size_t)repeat);
        spine_sort_doubles(lim, (size_t)repeat);
        double rate = spine_percentile(rates, (size_t)repeat, 50),
               limit = spine_percentile(lim, (size_t)repeat, 50);
        double lines = membw_lines_per_row(rb);
        if (cli_get(o, n, "json"))
            printf(
                "{\"bench\":\"sls\",\"rowtype\":\"%s\",\"tables\":%lld,\"rows\":%lld,\"dim\":%lld,"
                "\"batch\":%lld,\"lookups\":%lld,\"zipf\":%g,\"threads\":%lld,\"row_bytes\":%zu,"
                "\"rows_per_s\":%.0f,\"limit_rows_per_s\":%.0f,\"fraction_of_limit\":%.4f,"
                "\"lines_per_s\":%.0f,\"multi\":%s}\n",
                spine_rowtype_name(rt), T, rows, dim, batch, lookups, alpha, threads, rb, rate,
                limit, rate / limit, rate * lines, cli_get(o, n, "multi") ? "true" : "false");
        else
            printf("sls %s: %lld tables x %lld rows x dim %lld (%zu B rows), batch %lld x %lld "
                   "lookups, %lld threads: %.1f M rows/s = %.0f%% of this machine's random-read "
                   "limit for %zu B rows (%.1f M rows/s, measured alongside; medians of %lld)\n",
                   spine_rowtype_name(rt), T, rows, dim, rb, batch, lookups, threads, rate / 1e6,
                   100.0 * rate / limit, rb, limit / 1e6, repeat);
    }
    free(rates);
    free(lim);
    if (!rc && (v = cli_get(o, n, "indices-out"))) {
        /* all index sets as one batch file: lengths I32 [T, sets * B], values I64, table-major */
        spine_tensors ts = {0};
        size_t B2 = (size_t)NBATCHES * batch, nv = B2 * (size_t)T * lookups;
        int32_t *len = spine_alloc_aligned(B2 * T * 4);
        int64_t *val = spine_alloc_aligned(nv * 8);
        float *dense = spine_alloc_aligned(B2 * 4);
        bool ok = len && val && dense;
        for (size_t i = 0; ok && i < B2 * T; i++) len[i] = (int32_t)lookups;
        size_t k = 0;
        for (int t = 0; ok && t < T; t++)
            for (int s = 0; s < NBATCHES; s++)
                for (size_t i = 0; i < (size_t)batch * lookups; i++)
                    val[k++] = sets[s].values[(size_t)t * batch * lookups + i];
        for (size_t i = 0; ok && i < B2; i++) dense[i] = 0;
        int64_t sd[2] = {(int64_t)B2, 1}, sl[2] = {T, (int64_t)B2}, sv[1] = {(int64_t)nv};
        if (ok) {
            ok = st_add_owned(&ts, "dense", SPINE_DT_F32, 2, sd, dense, B2 * 4) != NULL;
            dense = NULL;
            ok = ok && st_add_owned(&ts, "lengths", SPINE_DT_I32, 2, sl, len, B2 * T * 4);
            len = NULL;
            ok = ok && st_add_owned(&ts, "values", SPINE_DT_I64, 1, sv, val, nv * 8);
            val = NULL;
        }
        spine_free_aligned(len), spine_free_aligned(val), spine_free_aligned(dense);
        if (!ok || st_write(v, &ts, NULL, NULL, NULL, &err)) {
            if (!ok) spine_fail(&err, SPINE_ERR_NOMEM, "out of memory");
            rc = 1;
        }
        st_free(&ts);
    }
    if (rc) goto fail_msg;
    goto out;
fail_msg:
    cli_print_error("bench sls", &err);
    rc = 1;
out:
    for (int s = 0; s < NBATCHES; s++) dlrm_inputs_free(&sets[s]);
    for (int t = 0; stores && t < T; t++) spine_store_free(stores[t]);
    for (int t = 0; data && t < T; t++)
        if (data[t]) spine_free_huge(data[t], tbytes);
    free(out);
    if (lim_buf) spine_free_huge(lim_buf, lim_bytes);
    free(offsets);
    free(stores);
    free(data);
    free(desc);
    spine_pool_free(pool);
    return rc;
}
