/* cmd_bench.c: `spine bench` (samples/s and latency percentiles of whole-model inference per
 * batch size) and `spine demo` (the built-in default model on a sample batch). */
#include "cli.h"

#include "../kernels/kernels.h"
#include "../kernels/fmapeak.h"
#include "../kernels/matmul.h"
#include "../kernels/membw.h"
#include "../base/idlepoll.h"
#include "../model/dlrm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define RING_BYTES ((double)(128u << 20)) /* distinct rows touched per ring: 4x a 32 MB LLC */

/* Rows served from hot tiers over rows read, across tables, since the model was built. */
static double hit_rate(const spine_model *m) {
    const spine_model_desc *d = spine_model_describe(m);
    uint64_t hits = 0, rows = 0;
    for (int t = 0; t < d->num_tables; t++) {
        spine_store_stats st;
        spine_store_stats_get(spine_model_store(m, t), &st);
        hits += st.hits;
        rows += st.rows_read;
    }
    return rows ? (double)hits / (double)rows : 0.0;
}

/* Load or generate the model named by --model or --preset/--rows-scale/--dtype/--seed. */
int cli_dlrm_model(const char *cmd, cli_opt *o, int n, spine_model **m) {
    const char *dir = cli_get(o, n, "model");
    spine_error err = {0};
    if (dir) {
        spine_load_opts lo = {0};
        if (!cli_placement(cli_get(o, n, "placement"), &lo.placement)) return 2;
        if (spine_model_load_opts(dir, &lo, m, &err)) {
            cli_print_error(cmd, &err);
            return 1;
        }
        return 0;
    }
    dlrm_gen_opts g;
    if (!cli_gen_opts(cmd, o, n, &g)) return 2;
    if (!g.preset) {
        fprintf(stderr, "spine %s: --preset or --model is required\n", cmd);
        return 2;
    }
    spine_pool *pool = NULL;
    if (spine_pool_create(2, &pool, &err)) {
        cli_print_error(cmd, &err);
        return 1;
    }
    cli_progress prog = {.label = "generating", .last_decile = -1};
    g.pool = pool;
    g.progress = cli_progress_cb;
    g.progress_arg = &prog;
    spine_status st = dlrm_gen_model(&g, m, &err);
    spine_pool_free(pool);
    if (st) {
        cli_print_error(cmd, &err);
        return 1;
    }
    return 0;
}

/* `spine bench fma`: this machine's FMA peak (FLOP/s) for 1..N threads. */
static int bench_fma(int argc, char **argv) {
    cli_opt o[] = {
        {"threads", true, "measure 1..N threads (default 2)", NULL},
        {"seconds", true, "per measurement (default 1)", NULL},
        {"json", false, "one JSON object per thread count", NULL},
        {"help", false, "this text", NULL},
    };
    int n = (int)SPINE_ARRAY_LEN(o), npos;
    if (cli_parse("bench fma", argc, argv, o, n, NULL, 0, &npos)) return 2;
    if (cli_get(o, n, "help")) {
        cli_usage("usage: spine bench fma [--threads N] [--json]", o, n);
        return 0;
    }
    long long threads = 2;
    double seconds = 1;
    const char *v;
    if ((v = cli_get(o, n, "threads")) && !cli_int("--threads", v, 1, 256, &threads)) return 2;
    if ((v = cli_get(o, n, "seconds")) && !cli_double("--seconds", v, 0.05, 60, &seconds)) return 2;
    spine_error err = {0};
    spine_pool *pool = NULL;
    if (spine_pool_create((int)threads, &pool, &err)) {
        cli_print_error("bench fma", &err);
        return 1;
    }
    int rc = 0;
    for (int t = 1; t <= threads && !rc; t++) {
        double f = 0;
        if (fmapeak_measure(pool, t, seconds, &f, &err)) {
            cli_print_error("bench fma", &err);
            rc = 1;
            break;
        }
        if (cli_get(o, n, "json"))
            printf("{\"bench\":\"fma\",\"threads\":%d,\"gflops\":%.2f}\n", t, f / 1e9);
        else
            printf("%d thread%s: %.1f GFLOP/s (fp32 FMA peak, best of %.0f s)\n", t,
                   t == 1 ? "" : "s", f / 1e9, seconds);
        fflush(stdout);
    }
    spine_pool_free(pool);
    return rc;
}

/* `spine bench matmul`: the transformer weight products (matmul.c) on weights far larger than
 * the last-level cache: GFLOP/s and GB/s of weights streamed, per dtype and shape. --portable
 * takes the paths a machine without AVX2 gets (scalar small-m, OpenBLAS beyond), which is the
 * A/B the kernel choices rest on. */
static int bench_matmul(int argc, char **argv) {
    cli_opt o[] = {
        {"m", true, "input rows (tokens) (default 1)", NULL},
        {"n", true, "weight rows (default 3584)", NULL},
        {"k", true, "weight columns (default 1024)", NULL},
        {"dtype", true, "f32 (default) | bf16", NULL},
        {"threads", true, "threads (default 1)", NULL},
        {"mib", true, "total weight bytes cycled through, MiB (default 1024)", NULL},
        {"seconds", true, "per measurement (default 2)", NULL},
        {"portable", false, "scalar / OpenBLAS paths instead of the AVX2 or AVX-512 kernels", NULL},
        {"rows", false, "keep the weights row-major where AVX-512 would take panels", NULL},
        {"json", false, "one JSON object", NULL},
        {"help", false, "this text", NULL},
    };
    int n = (int)SPINE_ARRAY_LEN(o), npos;
    if (cli_parse("bench matmul", argc, argv, o, n, NULL, 0, &npos)) return 2;
    if (cli_get(o, n, "help")) {
        cli_usage("usage: spine bench matmul [--m 1] [--n 3584] [--k 1024] [--dtype f32|bf16]", o,
                  n);
        return 0;
    }
    long long m = 1, nn = 3584, k = 1024, threads = 1, mib = 1024;
    double seconds = 2;
    const char *v;
    if ((v = cli_get(o, n, "m")) && !cli_int("--m", v, 1, 65536, &m)) return 2;
    if ((v = cli_get(o, n, "n")) && !cli_int("--n", v, 1, 1 << 20, &nn)) return 2;
    if ((v = cli_get(o, n, "k")) && !cli_int("--k", v, 1, 1 << 20, &k)) return 2;
    if ((v = cli_get(o, n, "threads")) && !cli_int("--threads", v, 1, 256, &threads)) return 2;
    if ((v = cli_get(o, n, "mib")) && !cli_int("--mib", v, 1, 1 << 20, &mib)) return 2;
    if ((v = cli_get(o, n, "seconds")) && !cli_double("--seconds", v, 0.01, 600, &seconds))
        return 2;
    bool bf16 = false;
    if ((v = cli_get(o, n, "dtype"))) {
        if (strcmp(v, "bf16") == 0)
            bf16 = true;
        else if (strcmp(v, "f32") != 0) {
            fprintf(stderr, "spine bench matmul: --dtype must be f32 or bf16\n");
            return 2;
        }
    }
    size_t es = bf16 ? 2 : 4, per = (size_t)nn * (size_t)k * es;
    size_t nmat = SPINE_MAX((size_t)1, ((size_t)mib << 20) / per);
    spine_error err = {0};
    spine_pool *pool = NULL;
    uint8_t *w = spine_alloc_huge(per * nmat);
    float *x = spine_alloc_aligned((size_t)m * k * sizeof(float));
    float *y = spine_alloc_aligned((size_t)m * nn * sizeof(float));
    mm_ctx mc = {0};
    int rc = 1;
    if (!w || !x || !y || spine_pool_create((int)threads, &pool, &err) ||
        mm_ctx_init(&mc, pool, (int)k, &err)) {
        fprintf(stderr, "spine bench matmul: cannot allocate %zu MiB of weights\n",
                (per * nmat) >> 20);
        goto out;
    }
    spine_rng r;
    spine_rng_seed(&r, 1);
    for (size_t i = 0; i < per * nmat / es; i++) {
        float f = spine_rng_uniform(&r) * 0.02f - 0.01f;
        if (bf16)
            ((uint16_t *)w)[i] = spine_f32_to_bf16(f);
        else
            ((float *)w)[i] = f;
    }
    for (size_t i = 0; i < (size_t)m * k; i++) x[i] = spine_rng_uniform(&r);
    mm_set_portable(cli_get(o, n, "portable") != NULL);
    /* panels where the model loader would lay them out (mm_wants_panels) */
    bool panels = mm_wants_panels() && !cli_get(o, n, "rows");
    for (size_t i = 0; i < nmat && panels; i++) {
        mm_weight pw = {w + i * per, bf16 ? SPINE_DT_BF16 : SPINE_DT_F32, (int)nn, (int)k, false};
        if (mm_pack(&pw, &err)) goto out;
    }
    dense_init(); /* BLAS single-threaded: the pool owns parallelism */
    uint64_t prods = 0;
    double t0 = spine_now(), t;
    do {
        for (size_t i = 0; i < nmat; i++) {
            mm_job j = {
                .x = x,
                .m = (int)m,
                .ldx = (int)k,
                .y = y,
                .ldy = (int)nn,
                .w = {w + i * per, bf16 ? SPINE_DT_BF16 : SPINE_DT_F32, (int)nn, (int)k, panels}};
            if (mm_run(&mc, &j, 1, &err)) goto out;
        }
        prods += nmat;
        t = spine_now() - t0;
    } while (t < seconds);
    double gflops = 2.0 * (double)m * (double)nn * (double)k * (double)prods / t / 1e9;
    double gbs = (double)per * (double)prods / t / 1e9;
    /* the tile unit took these products (panels past the small-m kernel; SPINE_AMX=0: no) */
    bool amx = panels && m > 2 * MM_SMALL_M && mm_amx_on();
    if (cli_get(o, n, "json"))
        printf("{\"bench\":\"matmul\",\"m\":%lld,\"n\":%lld,\"k\":%lld,\"dtype\":\"%s\","
               "\"threads\":%lld,\"portable\":%s,\"panels\":%s,\"amx\":%s,\"gflops\":%.2f,"
               "\"weight_gb_s\":%.2f}\n",
               m, nn, k, bf16 ? "bf16" : "f32", threads,
               cli_get(o, n, "portable") ? "true" : "false", panels ? "true" : "false",
               amx ? "true" : "false", gflops, gbs);
    else
        printf("m %lld, n %lld, k %lld, %s, %lld thread%s%s: %.1f GFLOP/s, %.2f GB/s of weights "
               "(%zu MiB cycled)\n",
               m, nn, k, bf16 ? "bf16" : "f32", threads, threads == 1 ? "" : "s",
               cli_get(o, n, "portable") ? " (portable paths)"
               : amx                     ? " (panels, AMX tiles)"
               : panels                  ? " (panels)"
                                         : "",
               gflops, gbs, (per * nmat) >> 20);
    rc = 0;
out:
    if (rc && err.msg[0]) cli_print_error("bench matmul", &err);
    mm_set_portable(false);
    mm_ctx_free(&mc);
    spine_pool_free(pool);
    if (w) spine_free_huge(w, per * nmat);
    spine_free_aligned(x);
    spine_free_aligned(y);
    return rc;
}

/* `spine bench membw`: this machine's sequential bandwidth and random-read limits, per thread
 * count, and the rows/s limit for each row type of a given dim. */
static int bench_membw(int argc, char **argv) {
    cli_opt o[] = {
        {"mib", true, "buffer size in MiB (default: 8x the last-level cache, at least 2048)", NULL},
        {"threads", true, "measure 1..N threads (default 2)", NULL},
        {"dim", true, "row width for the per-row-type limits (default 64)", NULL},
        {"seconds", true, "per measurement (default 1)", NULL},
        {"json", false, "one JSON object per thread count", NULL},
        {"repeat", true, "measure each K times and report the median (default 3)", NULL},
        {"help", false, "this text", NULL},
    };
    int n = (int)SPINE_ARRAY_LEN(o), npos;
    char *pos[1];
    if (cli_parse("bench membw", argc, argv, o, n, pos, 0, &npos)) return 2;
    if (cli_get(o, n, "help")) {
        cli_usage("usage: spine bench membw [--mib 2048] [--threads N] [--dim 64] [--json]", o, n);
        return 0;
    }
    long long mib = SPINE_MAX(2048, spine_llc_bytes() * 8 >> 20), threads = 2, dim = 64, repeat = 3;
    double seconds = 1;
    const char *v;
    if ((v = cli_get(o, n, "mib")) && !cli_int("--mib", v, 64, 1 << 20, &mib)) return 2;
    if ((v = cli_get(o, n, "threads")) && !cli_int("--threads", v, 1, 256, &threads)) return 2;
    if ((v = cli_get(o, n, "dim")) && !cli_int("--dim", v, 1, 4096, &dim)) return 2;
    if ((v = cli_get(o, n, "repeat")) && !cli_int("--repeat", v, 1, 99, &repeat)) return 2;
    if ((v = cli_get(o, n, "seconds")) && !cli_double("--seconds", v, 0.05, 60, &seconds)) return 2;
    bool json = cli_get(o, n, "json") != NULL;
    size_t bytes = (size_t)mib << 20;
    uint8_t *buf = spine_alloc_huge(bytes);
    spine_error err = {0};
    spine_pool *pool = NULL;
    if (!buf || spine_pool_create((int)threads, &pool, &err)) {
        fprintf(stderr, "spine bench membw: cannot allocate %lld MiB\n", mib);
        spine_free_huge(buf, bytes);
        return 1;
    }
    for (size_t i = 0; i < bytes; i += 4096) buf[i] = (uint8_t)i; /* fault every page in */
    int64_t huge = spine_huge_bytes();
    if (!json)
        printf("buffer %lld MiB, %.0f%% on 2 MiB pages; rows of dim %lld; medians of %lld\n"
               "%7s %9s %14s %14s %14s %14s %14s\n",
               mib, huge > 0 ? 100.0 * (double)huge / (double)bytes : 0.0, dim, repeat, "threads",
               "seq GB/s", "lines/s", "f32 rows/s", "f16 rows/s", "int8 rows/s", "int4 rows/s");
    int rc = 0;
    for (int t = 1; t <= threads && !rc; t++) {
        double seq, lines, rows[4];
        double samples[6][99]; /* seq, lines, 4 row types; repeats interleaved for fairness */
        for (int r = 0; r < repeat && !rc; r++) {
            if (membw_seq(pool, t, buf, bytes, seconds, &samples[0][r], &err) ||
                membw_random(pool, t, buf, bytes, 64, seconds, &samples[1][r], &err))
                rc = 1;
            for (int rt = 0; rt < 4 && !rc; rt++)
                if (membw_random(pool, t, buf, bytes, spine_row_bytes((spine_rowtype)rt, (int)dim),
                                 seconds, &samples[2 + rt][r], &err))
                    rc = 1;
        }
        if (rc) break;
        for (int k = 0; k < 6; k++) spine_sort_doubles(samples[k], (size_t)repeat);
        seq = samples[0][repeat / 2];
        lines = samples[1][repeat / 2];
        for (int rt = 0; rt < 4; rt++) rows[rt] = samples[2 + rt][repeat / 2];
        if (json) {
            printf("{\"bench\":\"membw\",\"threads\":%d,\"mib\":%lld,\"huge_fraction\":%.3f,"
                   "\"repeat\":%lld,\"seq_gbps\":%.2f,\"lines_per_s\":%.0f,\"dim\":%lld",
                   t, mib, huge > 0 ? (double)huge / (double)bytes : 0.0, repeat, seq / 1e9, lines,
                   dim);
            for (int rt = 0; rt < 4; rt++) {
                size_t rb = spine_row_bytes((spine_rowtype)rt, (int)dim);
                printf(",\"%s\":{\"row_bytes\":%zu,\"lines_per_row\":%.3f,\"rows_per_s\":%.0f}",
                       spine_rowtype_name((spine_rowtype)rt), rb, membw_lines_per_row(rb),
                       rows[rt]);
            }
            printf("}\n");
        } else {
            printf("%7d %9.2f %14.0f %14.0f %14.0f %14.0f %14.0f\n", t, seq / 1e9, lines, rows[0],
                   rows[1], rows[2], rows[3]);
        }
        fflush(stdout);
    }
    if (rc) cli_print_error("bench membw", &err);
    spine_pool_free(pool);
    spine_free_huge(buf, bytes);
    return rc;
}

/* Profile the workload on inputs drawn independently of the measured ones (another seed of the
 * same distribution: 20,000 samples), then give the tables hot tiers of hot_mb in total. */
static int profile_hot(spine_model *m, const dlrm_index_dist *dist, int lookups, double hot_mb,
                       const char *profile, bool json) {
    const spine_model_desc *d = spine_model_describe(m);
    uint32_t **counts = calloc((size_t)d->num_tables, sizeof *counts);
    spine_error err = {0};
    int rc = counts ? 0 : 1;
    for (int t = 0; t < d->num_tables && !rc; t++)
        if (!(counts[t] = calloc((size_t)d->tables[t].rows, sizeof **counts))) rc = 1;
    if (!rc && profile && dlrm_profile_read(profile, d, counts, &err)) rc = 1;
    spine_rng rng;
    spine_rng_seed(&rng, 0x9f0f11eu);
    for (int chunk = 0; chunk < 20 && !rc && !profile; chunk++) {
        dlrm_inputs in;
        if (dlrm_inputs_random(d, 1000, lookups, false, dist, &rng, &in, &err)) {
            rc = 1;
            break;
        }
        int64_t k = 0;
        for (int t = 0; t < d->num_tables; t++)
            for (int i = 0; i < 1000 * lookups; i++, k++) counts[t][in.values[k]]++;
        dlrm_inputs_free(&in);
    }
    if (!rc && dlrm_model_set_hot(m, counts, (size_t)(hot_mb * (1 << 20)), &err)) rc = 1;
    if (rc)
        cli_print_error("bench", &err);
    else if (!json) {
        size_t hot = 0;
        for (int t = 0; t < d->num_tables; t++)
            hot += spine_store_hot_bytes(spine_model_store(m, t));
        printf("hot tiers: %.1f MB of the hottest rows (profile: %s)\n", (double)hot / (1 << 20),
               profile ? profile : "20,000 samples, independent seed");
    }
    for (int t = 0; counts && t < d->num_tables; t++) free(counts[t]);
    free(counts);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    if (argc >= 1 && strcmp(argv[0], "sls") == 0) return cmd_bench_sls(argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "matmul") == 0) return bench_matmul(argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "fma") == 0) return bench_fma(argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "membw") == 0) return bench_membw(argc - 1, argv + 1);
    cli_opt o[] = {
        {"preset", true, "generate this preset in memory", NULL},
        {"model", true, "or load this model folder", NULL},
        {"rows-scale", true, "preset rows multiplier (default 1)", NULL},
        {"dtype", true, "preset embedding rows: f32 | f16 | int8 | int4", NULL},
        {"seed", true, "weights and inputs seed (default 1)", NULL},
        {"batch", true, "batch sizes (default 1,16,256,1024)", NULL},
        {"threads", true, "threads per inference (default 1)", NULL},
        {"lookups", true, "indices per bag (default: the model's lookups_per_table)", NULL},
        {"seconds", true, "measuring time per batch size (default 3)", NULL},
        {"json", false, "one JSON object per batch size", NULL},
        {"placement", true, "tables of --model: auto (default) | map | huge", NULL},
        {"schedule", true, "lookup order: table (default) | sample", NULL},
        {"table-group", true,
         "tables per lookup task, one multi-table kernel call each (default 0: automatic; 1: a "
         "task and a call per table)",
         NULL},
        {"zipf", true, "draw indices Zipf(A) (hot rows scattered), not uniformly", NULL},
        {"gap-ms", true,
         "idle this long before each timed batch (as between a server's queries; default 0)", NULL},
        {"idle-poll-ms", true,
         "keep the CPUs awake this long after each batch, as `spine serve` does (default 0: off)",
         NULL},
        {"hot-mb", true,
         "cache the hottest rows in N MB (profile: --profile, or 20,000 samples drawn apart)",
         NULL},
        {"profile", true, "a profile file (spine profile -o) for --hot-mb", NULL},
        {"help", false, "this text", NULL},
    };
    int n = (int)SPINE_ARRAY_LEN(o), npos;
    char *pos[1];
    if (cli_parse("bench", argc, argv, o, n, pos, 0, &npos)) return 2;
    if (cli_get(o, n, "help")) {
        cli_usage("usage: spine bench --preset NAME|--model DIR [--batch 1,16,256,1024] "
                  "[--threads N] [--json]",
                  o, n);
        return 0;
    }
    int batches[32] = {1, 16, 256, 1024}, nb = 4;
    const char *v;
    long long threads = 1, lookups = -1, seed = 1;
    double seconds = 3;
    if ((v = cli_get(o, n, "batch")) && (nb = cli_int_list("--batch", v, batches, 32)) < 0)
        return 2;
    if ((v = cli_get(o, n, "threads")) && !cli_int("--threads", v, 1, 256, &threads)) return 2;
    if ((v = cli_get(o, n, "lookups")) && !cli_int("--lookups", v, 0, 100000, &lookups)) return 2;
    if ((v = cli_get(o, n, "seconds")) && !cli_double("--seconds", v, 0.01, 3600, &seconds))
        return 2;
    if ((v = cli_get(o, n, "seed")) && !cli_int("--seed", v, 0, INT64_MAX, &seed)) return 2;
    bool json = cli_get(o, n, "json") != NULL;
    spine_schedule sched = SPINE_SCHED_TABLE;
    if ((v = cli_get(o, n, "schedule"))) {
        if (strcmp(v, "sample") == 0)
            sched = SPINE_SCHED_SAMPLE;
        else if (strcmp(v, "table") != 0) {
            fprintf(stderr, "spine bench: --schedule must be table or sample\n");
            return 2;
        }
    }
    spine_model *m = NULL;
    int rc = cli_dlrm_model("bench", o, n, &m);
    if (rc) return rc;
    const spine_model_desc *d = spine_model_describe(m);
    if (lookups < 0) lookups = d->lookups_per_table;
    spine_error err = {0};
    spine_pool *pool = NULL;
    int maxb = 1;
    for (int i = 0; i < nb; i++) maxb = SPINE_MAX(maxb, batches[i]);
    spine_ctx *ctx = NULL;
    if (spine_pool_create((int)threads, &pool, &err) ||
        spine_ctx_create(m, maxb, pool, &ctx, &err)) {
        cli_print_error("bench", &err);
        spine_pool_free(pool);
        spine_model_free(m);
        return 1;
    }
    spine_ctx_set_schedule(ctx, sched);
    long long tgroup = 0;
    if ((v = cli_get(o, n, "table-group")) && !cli_int("--table-group", v, 0, 4096, &tgroup))
        rc = 2;
    spine_ctx_set_table_group(ctx, (int)tgroup);
    dlrm_index_dist dist = {.alpha = 0, .seed = (uint64_t)seed};
    double hot_mb = 0;
    if ((v = cli_get(o, n, "zipf")) && !cli_double("--zipf", v, 0, 5, &dist.alpha)) rc = 2;
    double gap_ms = 0;
    if ((v = cli_get(o, n, "gap-ms")) && !cli_double("--gap-ms", v, 0, 10000, &gap_ms)) rc = 2;
    double poll_ms = 0;
    spine_idlepoll *ip = NULL;
    if ((v = cli_get(o, n, "idle-poll-ms")) && !cli_double("--idle-poll-ms", v, 0, 60e3, &poll_ms))
        rc = 2;
    if (!rc && poll_ms > 0 && spine_idlepoll_start(poll_ms, 1024, &ip, &err)) {
        cli_print_error("bench", &err);
        rc = 1;
    }
    if (!rc && (v = cli_get(o, n, "hot-mb")) && !cli_double("--hot-mb", v, 0, 1 << 20, &hot_mb))
        rc = 2;
    if (!rc && hot_mb > 0 &&
        profile_hot(m, &dist, (int)lookups, hot_mb, cli_get(o, n, "profile"), json) != 0)
        rc = 1;
    if (rc) {
        spine_idlepoll_stop(ip);
        spine_ctx_free(ctx);
        spine_pool_free(pool);
        spine_model_free(m);
        return rc;
    }
    double row_bytes = 0; /* bytes of rows one sample reads */
    for (int t = 0; t < d->num_tables; t++)
        row_bytes += (double)lookups * (double)spine_row_bytes(d->tables[t].rowtype, d->emb_dim);
    if (!json)
        printf(
            "model %s: %d tables x dim %d, %s rows, %lld lookups/table, %lld thread%s, kernels %s\n"
            "%8s %14s %10s %10s %10s %8s\n",
            d->name, d->num_tables, d->emb_dim, spine_rowtype_name(d->tables[0].rowtype), lookups,
            threads, threads == 1 ? "" : "s", sls_isa_name(sls_best_isa()), "batch", "samples/s",
            "p50 ms", "p95 ms", "p99 ms", "iters");
    cli_print_placement(json ? stderr : stdout, d);
    spine_rng rng;
    spine_rng_seed(&rng, (uint64_t)seed * 7919 + 17);
    for (int bi = 0; bi < nb && !rc; bi++) {
        int B = batches[bi];
        int ring = (int)ceil(RING_BYTES / SPINE_MAX(1.0, row_bytes * B));
        ring = SPINE_MAX(2, SPINE_MIN(ring, 256));
        dlrm_inputs *in = calloc((size_t)ring, sizeof *in);
        float *out = malloc((size_t)B * sizeof *out);
        size_t cap = 1 << 16, nlat = 0;
        double *lat = malloc(cap * sizeof *lat);
        if (!in || !out || !lat) {
            fprintf(stderr, "spine bench: out of memory\n");
            rc = 1;
        }
        for (int r = 0; r < ring && !rc; r++)
            if (dlrm_inputs_random(d, B, (int)lookups, false, &dist, &rng, &in[r], &err)) rc = 1;
        /* warm up: touch every batch once (page faults, caches of the MLP weights) */
        for (int r = 0; r < ring && !rc; r++)
            if (spine_ctx_run(ctx, &in[r].batch, out, 0, &err)) rc = 1;
        double start = spine_now(), now = start;
        int r = 0;
        while (!rc && (now - start < seconds || nlat < 5)) {
            if (gap_ms > 0) { /* idle first, as a server's threads are between sparse queries */
                struct timespec ts = {(time_t)(gap_ms / 1e3), (long)(fmod(gap_ms, 1e3) * 1e6)};
                nanosleep(&ts, NULL);
            }
            double t0 = spine_now();
            spine_idlepoll_touch(ip);
            if (spine_ctx_run(ctx, &in[r].batch, out, 0, &err)) rc = 1;
            now = spine_now();
            spine_idlepoll_touch(ip); /* the window covers the gap that follows */
            if (nlat == cap) {
                double *nl = realloc(lat, 2 * cap * sizeof *lat);
                if (!nl) break;
                lat = nl;
                cap *= 2;
            }
            lat[nlat++] = now - t0;
            r = (r + 1) % ring;
        }
        if (rc) {
            if (err.msg[0]) cli_print_error("bench", &err);
        } else {
            double total = 0;
            for (size_t i = 0; i < nlat; i++) total += lat[i];
            spine_sort_doubles(lat, nlat);
            double sps = (double)B * (double)nlat / total;
            double p50 = spine_percentile(lat, nlat, 50) * 1e3,
                   p95 = spine_percentile(lat, nlat, 95) * 1e3,
                   p99 = spine_percentile(lat, nlat, 99) * 1e3;
            if (json)
                printf("{\"bench\":\"dlrm\",\"model\":\"%s\",\"dtype\":\"%s\",\"threads\":%lld,"
                       "\"lookups\":%lld,\"batch\":%d,\"samples_per_s\":%.1f,\"p50_ms\":%.4f,"
                       "\"p95_ms\":%.4f,\"p99_ms\":%.4f,\"mean_ms\":%.4f,\"iters\":%zu,"
                       "\"rows_per_s\":%.0f,\"isa\":\"%s\",\"huge_bytes\":%llu,\"schedule\":\"%s\","
                       "\"zipf\":%g,\"hot_mb\":%g,\"hit_rate\":%.4f,\"table_group\":%lld,"
                       "\"gap_ms\":%g,\"idle_poll_ms\":%g}\n",
                       d->name, spine_rowtype_name(d->tables[0].rowtype), threads, lookups, B, sps,
                       p50, p95, p99, total / (double)nlat * 1e3, nlat,
                       sps * (double)lookups * d->num_tables, sls_isa_name(sls_best_isa()),
                       (unsigned long long)d->emb_bytes_huge,
                       sched == SPINE_SCHED_TABLE ? "table" : "sample", dist.alpha, hot_mb,
                       hit_rate(m), tgroup, gap_ms, poll_ms);
            else
                printf("%8d %14.1f %10.4f %10.4f %10.4f %8zu\n", B, sps, p50, p95, p99, nlat);
            if (!json && hot_mb > 0)
                printf("         hot-tier hit rate so far: %.1f%%\n", 100 * hit_rate(m));
            fflush(stdout);
        }
        for (int k = 0; in && k < ring; k++) dlrm_inputs_free(&in[k]);
        free(in);
        free(out);
        free(lat);
    }
    spine_idlepoll_stop(ip);
    spine_ctx_free(ctx);
    spine_pool_free(pool);
    spine_model_free(m);
    return rc;
}

int cmd_demo(int argc, char **argv) {
    (void)argc;
    (void)argv;
    spine_error err = {0};
    spine_model *m = NULL;
    spine_ctx *ctx = NULL;
    spine_pool *pool = NULL;
    dlrm_gen_opts g = {.preset = DLRM_DEFAULT_PRESET,
                       .rows_scale = DLRM_DEFAULT_ROWS_SCALE,
                       .seed = DLRM_DEFAULT_SEED};
    printf("spine %s: generating the built-in default model (%s shape, rows x %g, seed %d)\n",
           spine_version(), DLRM_DEFAULT_PRESET, DLRM_DEFAULT_ROWS_SCALE, DLRM_DEFAULT_SEED);
    double t0 = spine_now();
    if (spine_pool_create(2, &pool, &err) || (g.pool = pool, dlrm_gen_model(&g, &m, &err)) ||
        spine_ctx_create(m, 8, pool, &ctx, &err)) {
        cli_print_error("demo", &err);
        spine_pool_free(pool);
        spine_model_free(m);
        return 1;
    }
    const spine_model_desc *d = spine_model_describe(m);
    printf("model ready in %.2f s: %d dense, %d tables x %lld rows x dim %d, %.0f MB of rows\n",
           spine_now() - t0, d->num_dense, d->num_tables, (long long)d->tables[0].rows, d->emb_dim,
           (double)d->emb_bytes / 1e6);
    spine_rng rng;
    spine_rng_seed(&rng, 42);
    dlrm_inputs in;
    float out[8];
    if (dlrm_inputs_random(d, 8, d->lookups_per_table, false, NULL, &rng, &in, &err) ||
        spine_ctx_run(ctx, &in.batch, out, 0, &err)) {
        cli_print_error("demo", &err);
    } else {
        double t1 = spine_now();
        spine_ctx_run(ctx, &in.batch, out, 0, &err);
        double dt = spine_now() - t1;
        printf("batch of 8 samples (%d lookups per table) in %.3f ms:\n", d->lookups_per_table,
               dt * 1e3);
        for (int i = 0; i < 8; i++) printf("  sample %d: p(click) = %.6f\n", i, out[i]);
    }
    dlrm_inputs_free(&in);
    spine_ctx_free(ctx);
    spine_pool_free(pool);
    spine_model_free(m);
    return err.code ? 1 : 0;
}
