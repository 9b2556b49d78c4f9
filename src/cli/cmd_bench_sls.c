/* cmd_bench_sls.c: `spine bench sls`: pooled embedding lookups alone (SparseLengthsSum over T
 * tables, every row type), rows/s and the fraction of this machine's random-read limit for
 * that row size, measured in the same run; --indices-out writes the indices so that
 * bench/sls_torch.py runs PyTorch's nn.EmbeddingBag on the same lookups; --hot-mb measures the
 * same tables with hot tiers (from a profile drawn apart) against without, alternating. */
#include "cli.h"

#include <math.h>

#include "../base/pool.h"
#include "../kernels/kernels.h"
#include "../kernels/membw.h"
#include "../model/dlrm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Distinct index sets cycled, so one batch's rows do not stay cached: at least 8, and enough
 * that the rows they read come to 4x the last-level cache (a 480 MiB LLC held every row of 8
 * sets of 8 x 256 x 80 f32 lookups, and the "memory" rate was the cache's); at most 4096. */
static int index_sets(long long T, long long batch, long long lookups, size_t rb) {
    double per = (double)T * (double)batch * (double)lookups * (double)rb;
    double want = 4.0 * (double)spine_llc_bytes() / per;
    return (int)SPINE_MIN(4096.0, SPINE_MAX(8.0, ceil(want)));
}

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

#define PROFILE_SAMPLES 20000 /* a hot tier's profile: as `spine bench --hot-mb` draws it */

/* Hot stores over the tables of d, as `spine bench --hot-mb` builds them: a profile of
 * PROFILE_SAMPLES samples drawn from dist with another seed than the measured ones, then
 * dlrm_hot_lists' choice of rows for `budget` bytes in all. */
static spine_status make_hot_stores(const spine_model_desc *d, uint8_t *const *data, int dim,
                                    spine_rowtype rt, int lookups, const dlrm_index_dist *dist,
                                    size_t budget, spine_store **hot, spine_error *err) {
    const int T = d->num_tables;
    uint32_t **counts = calloc((size_t)T, sizeof *counts);
    int64_t **lists = calloc((size_t)T, sizeof *lists);
    size_t *per = calloc((size_t)T, sizeof *per);
    spine_status st = !counts || !lists || !per ? SPINE_ERR_NOMEM : SPINE_OK;
    for (int t = 0; !st && t < T; t++)
        if (!(counts[t] = calloc((size_t)d->tables[t].rows, sizeof **counts))) st = SPINE_ERR_NOMEM;
    if (st) st = spine_fail(err, SPINE_ERR_NOMEM, "out of memory (profile)");
    spine_rng rng;
    spine_rng_seed(&rng, 424242);
    dlrm_inputs in = {0};
    if (!st) st = dlrm_inputs_random(d, PROFILE_SAMPLES, lookups, false, dist, &rng, &in, err);
    if (!st) st = dlrm_profile_count(d, &in.batch, in.nvalues, counts, err);
    if (!st) st = dlrm_hot_lists(d, counts, budget, lists, per, err);
    for (int t = 0; !st && t < T; t++)
        st = spine_store_hot_create(d->tables[t].name, data[t], d->tables[t].rows, dim, rt,
                                    lists[t], per[t], (size_t)-1, &hot[t], err);
    dlrm_inputs_free(&in);
    for (int t = 0; t < T; t++) {
        if (counts) free(counts[t]);
        if (lists) free(lists[t]);
    }
    free(counts);
    free(lists);
    free(per);
    return st;
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

/* Rows/s of one store set for `seconds`, cycling the index sets. */
static spine_status time_run(spine_pool *pool, run_arg a, const int64_t *offsets,
                             const dlrm_inputs *sets, int nsets, double seconds, int64_t lookups,
                             double *rate) {
    uint64_t runs = 0;
    double t0 = spine_now(), t;
    do {
        int s = (int)(runs % (uint64_t)nsets);
        a.offsets = offsets + (size_t)s * a.tables * (a.batch + 1);
        a.values = sets[s].values;
        spine_pool_run(pool, a.multi ? a.chunks : a.tables * a.chunks, run_task, &a);
        runs++;
        t = spine_now() - t0;
    } while (t < seconds && a.st == SPINE_OK);
    *rate = (double)runs * (double)a.batch * (double)lookups * (double)a.tables / t;
    return a.st;
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
        {"zipf-ranks", true,
         "LO:HI: only Zipf ranks LO..HI-1 of each table (0 the hottest), drawn by rejection: "
         "the rows a hot tier would hold (0:K) or leave (K:rows), measured apart",
         NULL},
        {"threads", true, "threads (default 2)", NULL},
        {"seconds", true, "per measurement (default 2)", NULL},
        {"repeat", true, "measurements; the median is reported (default 3)", NULL},
        {"indices-out", true, "write the index sets as a batch file (for bench/sls_torch.py)",
         NULL},
        {"multi", false, "all tables of a chunk in one multi-table call (FBGEMM's way)", NULL},
        {"pages", true, "tables on 2m pages (default) or 4k (as a mapped model file's are)", NULL},
        {"hot-mb", true,
         "also measure with hot tiers of N MB in all (profile: 20,000 samples drawn apart), "
         "alternating with the plain tables",
         NULL},
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
    double alpha = 0, seconds = 2, hot_mb = 0;
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
    if ((v = cli_get(o, n, "hot-mb")) && !cli_double("--hot-mb", v, 0, 1 << 20, &hot_mb)) return 2;
    unsigned long long rank_lo = 0, rank_hi = 0;
    if ((v = cli_get(o, n, "zipf-ranks"))) {
        char tail;
        if (sscanf(v, "%llu:%llu%c", &rank_lo, &rank_hi, &tail) != 2 || rank_lo >= rank_hi ||
            rank_hi > (unsigned long long)rows || alpha <= 0 || hot_mb > 0) {
            fprintf(stderr,
                    "spine bench sls: --zipf-ranks takes LO:HI with LO < HI <= --rows, with "
                    "--zipf above 0 and without --hot-mb, not '%s'\n",
                    v);
            return 2;
        }
    }
    if ((v = cli_get(o, n, "seconds")) && !cli_double("--seconds", v, 0.01, 600, &seconds))
        return 2;
    if ((v = cli_get(o, n, "rowtype")) && spine_rowtype_parse(v, &rt)) {
        fprintf(stderr, "spine bench sls: --rowtype must be f32, f16, int8 or int4\n");
        return 2;
    }
    bool small_pages = false;
    if ((v = cli_get(o, n, "pages"))) {
        if (strcmp(v, "4k") != 0 && strcmp(v, "2m") != 0) {
            fprintf(stderr, "spine bench sls: --pages must be 2m or 4k, not '%s'\n", v);
            return 2;
        }
        small_pages = strcmp(v, "4k") == 0;
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
    spine_store **hstores = hot_mb > 0 ? calloc((size_t)T, sizeof *hstores) : NULL;
    const int nsets = index_sets(T, batch, lookups, rb);
    int64_t *offsets = malloc((size_t)nsets * T * (batch + 1) * sizeof *offsets);
    dlrm_inputs *sets = calloc((size_t)nsets, sizeof *sets);
    float *out = NULL;
    /* the limit probe's own buffer: as large as the tables (at least 1 GiB), so that the probe
     * finds as much of its reads in the last-level cache as the kernel does; the tables should
     * be far larger than that cache (a 480 MiB LLC held most of 8 x 1M int8 rows) */
    size_t lim_bytes = (SPINE_MAX((size_t)1 << 30, tbytes * (size_t)T) + ((size_t)2 << 20) - 1) &
                       ~(((size_t)2 << 20) - 1);
    uint8_t *lim_buf = spine_alloc_huge(lim_bytes);
    if (!lim_buf) {
        spine_fail(&err, SPINE_ERR_NOMEM, "cannot allocate the %zu MiB probe buffer",
                   lim_bytes >> 20);
        goto fail_msg;
    }
    for (size_t i = 0; i < lim_bytes; i += 4096) lim_buf[i] = (uint8_t)i;
    if (!desc || !data || !stores || !offsets || !sets || (hot_mb > 0 && !hstores) ||
        spine_pool_create((int)threads, &pool, &err))
        goto fail_msg;
    cli_progress prog = {.label = "filling tables", .last_decile = -1};
    for (int t = 0; t < T; t++) {
        data[t] = spine_alloc_huge(tbytes);
        if (!data[t]) {
            spine_fail(&err, SPINE_ERR_NOMEM, "cannot allocate %zu bytes for table %d", tbytes, t);
            goto fail_msg;
        }
        if (small_pages) madvise(data[t], tbytes, MADV_NOHUGEPAGE); /* before the first touch */
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
    dlrm_index_dist dist = {.alpha = alpha, .seed = 1, .rank_lo = rank_lo, .rank_hi = rank_hi};
    for (int s = 0; s < nsets; s++) {
        if (dlrm_inputs_random(&d, (int32_t)batch, (int)lookups, false, alpha > 0 ? &dist : NULL,
                               &rng, &sets[s], &err))
            goto fail_msg;
        for (int t = 0; t < T; t++) /* CSR offsets into the set's table-major values */
            for (int b = 0; b <= batch; b++)
                offsets[((size_t)s * T + t) * (batch + 1) + b] = ((int64_t)t * batch + b) * lookups;
    }
    if (hot_mb > 0 && make_hot_stores(&d, data, (int)dim, rt, (int)lookups, &dist,
                                      (size_t)(hot_mb * (1 << 20)), hstores, &err))
        goto fail_msg;
    int chunks = (int)SPINE_MAX(1, threads);
    out = malloc((size_t)threads * ((size_t)batch + 2) * (size_t)dim * sizeof *out);
    if (!out) goto fail_msg;
    double *rates = calloc((size_t)repeat, sizeof *rates),
           *lim = calloc((size_t)repeat, sizeof *lim),
           *hrates = calloc((size_t)repeat, sizeof *hrates),
           *ratio = calloc((size_t)repeat, sizeof *ratio);
    if (!rates || !lim || !hrates || !ratio) {
        free(rates), free(lim), free(hrates), free(ratio);
        goto fail_msg;
    }
    for (int r = 0; r < repeat && rc; r++) {
        /* the limit and the kernel, interleaved: this machine drifts within minutes */
        if (membw_random(pool, (int)threads, lim_buf, lim_bytes, rb, seconds / 2, &lim[r], &err))
            break;
        run_arg a = {.stores = stores,
                     .tables = (int)T,
                     .chunks = chunks,
                     .batch = (int32_t)batch,
                     .out = out,
                     .dim = (int)dim,
                     .multi = cli_get(o, n, "multi") != NULL};
        run_arg h = a;
        h.stores = hstores;
        /* with hot tiers, the two alternate which goes first */
        spine_status st = hot_mb > 0 && r % 2 ? time_run(pool, h, offsets, sets, nsets, seconds,
                                                         lookups, &hrates[r])
                                              : SPINE_OK;
        if (!st) st = time_run(pool, a, offsets, sets, nsets, seconds, lookups, &rates[r]);
        if (!st && hot_mb > 0 && r % 2 == 0)
            st = time_run(pool, h, offsets, sets, nsets, seconds, lookups, &hrates[r]);
        if (st) {
            spine_fail(&err, st, "lookup failed");
            break;
        }
        ratio[r] = hot_mb > 0 ? hrates[r] / rates[r] : 0;
        if (r == repeat - 1) rc = 0;
    }
    if (!rc) {
        spine_sort_doubles(rates, (size_t)repeat);
        spine_sort_doubles(lim, (size_t)repeat);
        double rate = spine_percentile(rates, (size_t)repeat, 50),
               limit = spine_percentile(lim, (size_t)repeat, 50);
        double lines = membw_lines_per_row(rb);
        double hrate = 0, hratio = 0, hit = 0, hbytes = 0;
        if (hot_mb > 0) {
            spine_sort_doubles(hrates, (size_t)repeat);
            spine_sort_doubles(ratio, (size_t)repeat);
            hrate = spine_percentile(hrates, (size_t)repeat, 50);
            hratio = spine_percentile(ratio, (size_t)repeat, 50);
            uint64_t hits = 0, read = 0;
            for (int t = 0; t < T; t++) {
                spine_store_stats ss;
                spine_store_stats_get(hstores[t], &ss);
                hits += ss.hits, read += ss.rows_read;
                hbytes += (double)spine_store_hot_bytes(hstores[t]);
            }
            hit = read ? (double)hits / (double)read : 0;
        }
        if (cli_get(o, n, "json"))
            printf(
                "{\"bench\":\"sls\",\"rowtype\":\"%s\",\"tables\":%lld,\"rows\":%lld,\"dim\":%lld,"
                "\"batch\":%lld,\"lookups\":%lld,\"zipf\":%g,\"zipf_rank_lo\":%llu,"
                "\"zipf_rank_hi\":%llu,\"threads\":%lld,\"row_bytes\":%zu,"
                "\"rows_per_s\":%.0f,\"limit_rows_per_s\":%.0f,\"fraction_of_limit\":%.4f,"
                "\"lines_per_s\":%.0f,\"multi\":%s,\"hot_mb\":%g,\"hot_bytes\":%.0f,"
                "\"hot_rows_per_s\":%.0f,\"hot_hit_rate\":%.4f,\"hot_ratio\":%.4f,"
                "\"isa\":\"%s\",\"prefetch\":\"t%d:%d\",\"index_sets\":%d,\"llc_bytes\":%lld,"
                "\"table_bytes\":%zu,\"limit_"
                "buffer_bytes\":%zu}\n",
                spine_rowtype_name(rt), T, rows, dim, batch, lookups, alpha, rank_lo,
                rank_hi ? rank_hi : (unsigned long long)rows, threads, rb, rate, limit,
                rate / limit, rate * lines, cli_get(o, n, "multi") ? "true" : "false", hot_mb,
                hbytes, hrate, hit, hratio, sls_isa_name(sls_best_isa()),
                sls_prefetch_get()->l2 ? 1 : 0, sls_prefetch_get()->dist, nsets,
                (long long)spine_llc_bytes(), tbytes * (size_t)T, lim_bytes);
        else
            printf("sls %s: %lld tables x %lld rows x dim %lld (%zu B rows), batch %lld x %lld "
                   "lookups, %lld threads: %.1f M rows/s = %.0f%% of this machine's random-read "
                   "limit for %zu B rows (%.1f M rows/s, measured alongside; medians of %lld); "
                   "%s kernels, tables %.2f GB, last-level cache %.0f MiB\n",
                   spine_rowtype_name(rt), T, rows, dim, rb, batch, lookups, threads, rate / 1e6,
                   100.0 * rate / limit, rb, limit / 1e6, repeat, sls_isa_name(sls_best_isa()),
                   (double)(tbytes * (size_t)T) / 1e9, (double)spine_llc_bytes() / (1 << 20));
        if (rank_hi && !cli_get(o, n, "json"))
            printf("  indices: Zipf(%g) ranks %llu..%llu of each table only\n", alpha, rank_lo,
                   rank_hi - 1);
        if (hot_mb > 0 && !cli_get(o, n, "json"))
            printf("  with hot tiers (%.1f MB in all): %.1f M rows/s, %.1f%% of rows from the "
                   "tiers; hot / plain %.2fx (median of %lld alternating pairs)\n",
                   hbytes / (1 << 20), hrate / 1e6, 100.0 * hit, hratio, repeat);
    }
    free(rates);
    free(lim);
    free(hrates);
    free(ratio);
    if (!rc && (v = cli_get(o, n, "indices-out"))) {
        /* all index sets as one batch file: lengths I32 [T, sets * B], values I64, table-major */
        spine_tensors ts = {0};
        size_t B2 = (size_t)nsets * batch, nv = B2 * (size_t)T * lookups;
        int32_t *len = spine_alloc_aligned(B2 * T * 4);
        int64_t *val = spine_alloc_aligned(nv * 8);
        float *dense = spine_alloc_aligned(B2 * 4);
        bool ok = len && val && dense;
        for (size_t i = 0; ok && i < B2 * T; i++) len[i] = (int32_t)lookups;
        size_t k = 0;
        for (int t = 0; ok && t < T; t++)
            for (int s = 0; s < nsets; s++)
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
    for (int s = 0; sets && s < nsets; s++) dlrm_inputs_free(&sets[s]);
    free(sets);
    for (int t = 0; stores && t < T; t++) spine_store_free(stores[t]);
    for (int t = 0; hstores && t < T; t++) spine_store_free(hstores[t]);
    free(hstores);
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
