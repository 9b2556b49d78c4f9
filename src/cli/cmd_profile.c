/* cmd_profile.c: `spine trace gen` (synthetic DLRM query traces with Zipf skew and temporal
 * locality, written as batch files) and `spine profile` (row frequencies of a trace: a profile
 * file, and the hit rate hot tiers of several sizes would reach on it). */
#include "cli.h"

#include "../io/io.h"
#include "../model/dlrm.h"

#include <stdio.h>
#include <stdlib.h>

static cli_opt model_opts[] = {
    {"model", true, "model folder", NULL},
    {"preset", true, "or: a preset generated in memory", NULL},
    {"rows-scale", true, "with --preset: multiply every table's rows", NULL},
    {"dtype", true, "with --preset: embedding rows f32 | f16 | int8 | int4", NULL},
    {"seed", true, "seed (default 1)", NULL},
    {"placement", true, "with --model: auto | map | huge", NULL},
};

static int trace_gen(int argc, char **argv) {
    cli_opt o[] = {
        model_opts[0],
        model_opts[1],
        model_opts[2],
        model_opts[3],
        model_opts[4],
        model_opts[5],
        {"samples", true, "queries (samples) in the trace (default 10000)", NULL},
        {"lookups", true, "indices per bag (default: the model's lookups_per_table)", NULL},
        {"zipf", true, "Zipf skew of row popularity (default 1.0; 0: uniform)", NULL},
        {"locality", true, "0..1: chance an index repeats a recent one of its table (default 0)",
         NULL},
        {"o", true, "output batch file", NULL},
        {"help", false, "this text", NULL},
    };
    int n = (int)SPINE_ARRAY_LEN(o), npos;
    if (cli_parse("trace gen", argc, argv, o, n, NULL, 0, &npos)) return 2;
    if (cli_get(o, n, "help")) {
        cli_usage("usage: spine trace gen (--model DIR | --preset P) [--samples N] [--zipf A] "
                  "[--locality P] -o FILE",
                  o, n);
        return 0;
    }
    const char *out = cli_get(o, n, "o"), *v;
    if (!out) {
        fprintf(stderr, "spine trace gen: -o is required\n");
        return 2;
    }
    long long samples = 10000, lookups = -1, seed = 1;
    double alpha = 1.0, locality = 0.0;
    if ((v = cli_get(o, n, "samples")) && !cli_int("--samples", v, 1, 1 << 24, &samples)) return 2;
    if ((v = cli_get(o, n, "lookups")) && !cli_int("--lookups", v, 0, 100000, &lookups)) return 2;
    if ((v = cli_get(o, n, "zipf")) && !cli_double("--zipf", v, 0, 5, &alpha)) return 2;
    if ((v = cli_get(o, n, "locality")) && !cli_double("--locality", v, 0, 1, &locality)) return 2;
    if ((v = cli_get(o, n, "seed")) && !cli_int("--seed", v, 0, INT64_MAX, &seed)) return 2;
    spine_model *m = NULL;
    int rc = cli_dlrm_model("trace gen", o, n, &m);
    if (rc) return rc;
    const spine_model_desc *d = spine_model_describe(m);
    if (lookups < 0) lookups = d->lookups_per_table;
    spine_error err = {0};
    spine_rng rng;
    spine_rng_seed(&rng, (uint64_t)seed * 31 + 7);
    dlrm_index_dist dist = {.alpha = alpha, .seed = (uint64_t)seed};
    dlrm_inputs in;
    if (dlrm_inputs_random(d, (int32_t)samples, (int)lookups, false, alpha > 0 ? &dist : NULL, &rng,
                           &in, &err)) {
        cli_print_error("trace gen", &err);
        spine_model_free(m);
        return 1;
    }
    dlrm_trace_locality(d, (int32_t)samples, in.values, in.lengths, locality, &rng);
    /* the batch-file layout: dense F32 [B, D], lengths I32 [T, B], values I64 [N] */
    spine_tensors ts = {0};
    int64_t sd[2] = {samples, d->num_dense}, sl[2] = {d->num_tables, samples}, sv[1] = {in.nvalues};
    size_t bd = (size_t)samples * d->num_dense * 4, bl = (size_t)samples * d->num_tables * 4,
           bv = (size_t)in.nvalues * 8;
    void *pd = spine_alloc_aligned(bd ? bd : 4), *pl = spine_alloc_aligned(bl ? bl : 4),
         *pv = spine_alloc_aligned(bv ? bv : 8);
    bool ok = pd && pl && pv;
    if (ok) {
        memcpy(pd, in.dense, bd);
        memcpy(pl, in.lengths, bl);
        memcpy(pv, in.values, bv);
        ok = st_add_owned(&ts, "dense", SPINE_DT_F32, 2, sd, pd, bd) != NULL;
        pd = NULL;
        ok = ok && st_add_owned(&ts, "lengths", SPINE_DT_I32, 2, sl, pl, bl) != NULL;
        pl = NULL;
        ok = ok && st_add_owned(&ts, "values", SPINE_DT_I64, 1, sv, pv, bv) != NULL;
        pv = NULL;
    }
    spine_free_aligned(pd);
    spine_free_aligned(pl);
    spine_free_aligned(pv);
    char meta[160];
    snprintf(meta, sizeof meta,
             "{\"trace\":\"spine trace gen\",\"zipf\":\"%g\",\"locality\":\"%g\"}", alpha,
             locality);
    if (!ok)
        rc = 1, fprintf(stderr, "spine trace gen: out of memory\n");
    else if (st_write(out, &ts, meta, NULL, NULL, &err))
        rc = 1, cli_print_error("trace gen", &err);
    else
        printf("wrote %s: %lld queries, %lld lookups\n", out, samples, (long long)in.nvalues);
    st_free(&ts);
    dlrm_inputs_free(&in);
    spine_model_free(m);
    return rc;
}

int cmd_trace(int argc, char **argv) {
    if (argc > 0 && strcmp(argv[0], "gen") == 0) return trace_gen(argc - 1, argv + 1);
    fprintf(stderr, "usage: spine trace gen [options] -o FILE  ('spine trace gen --help')\n");
    return 2;
}

int cmd_profile(int argc, char **argv) {
    cli_opt o[] = {
        model_opts[0],
        model_opts[1],
        model_opts[2],
        model_opts[3],
        model_opts[4],
        model_opts[5],
        {"trace", true, "a trace: a batch file whose samples are the queries", NULL},
        {"o", true, "write the profile (row counts per table) here", NULL},
        {"budgets-mb", true, "hot-tier sizes to report the hit rate for (default 1,4,16,64,256)",
         NULL},
        {"help", false, "this text", NULL},
    };
    int n = (int)SPINE_ARRAY_LEN(o), npos;
    if (cli_parse("profile", argc, argv, o, n, NULL, 0, &npos)) return 2;
    if (cli_get(o, n, "help")) {
        cli_usage("usage: spine profile (--model DIR | --preset P) --trace FILE [-o PROFILE]", o,
                  n);
        return 0;
    }
    const char *trace = cli_get(o, n, "trace"), *v;
    if (!trace) {
        fprintf(stderr, "spine profile: --trace is required\n");
        return 2;
    }
    int budgets[16] = {1, 4, 16, 64, 256}, nbud = 5;
    if ((v = cli_get(o, n, "budgets-mb")) &&
        (nbud = cli_int_list("--budgets-mb", v, budgets, 16)) < 0)
        return 2;
    spine_model *m = NULL;
    int rc = cli_dlrm_model("profile", o, n, &m);
    if (rc) return rc;
    const spine_model_desc *d = spine_model_describe(m);
    spine_error err = {0};
    batch_file bf;
    uint32_t **counts = calloc((size_t)d->num_tables, sizeof *counts);
    rc = counts ? 0 : 1;
    for (int t = 0; t < d->num_tables && !rc; t++)
        if (!(counts[t] = calloc((size_t)d->tables[t].rows ? (size_t)d->tables[t].rows : 1,
                                 sizeof **counts)))
            rc = 1;
    if (rc) {
        fprintf(stderr, "spine profile: out of memory\n");
    } else if (batch_file_open(trace, d->num_dense, d->num_tables, &bf, &err)) {
        cli_print_error("profile", &err);
        rc = 1;
    } else {
        if (dlrm_profile_count(d, &bf.batch, bf.nvalues, counts, &err)) {
            spine_error_prefix(&err, "%s: ", trace);
            cli_print_error("profile", &err);
            rc = 1;
        } else {
            uint64_t distinct = 0, total = 0;
            for (int t = 0; t < d->num_tables; t++)
                for (int64_t r = 0; r < d->tables[t].rows; r++)
                    distinct += counts[t][r] > 0, total += counts[t][r];
            printf(
                "%s: %d queries, %llu lookups, %llu distinct rows (%.1f%% of the tables' rows)\n",
                trace, bf.batch.batch, (unsigned long long)total, (unsigned long long)distinct,
                100.0 * (double)distinct / (double)SPINE_MAX(d->emb_params / d->emb_dim, 1));
            double bud[16], hit[16];
            for (int i = 0; i < nbud; i++) bud[i] = budgets[i];
            if (dlrm_profile_coverage(d, counts, bud, nbud, hit, &err)) {
                cli_print_error("profile", &err);
                rc = 1;
            }
            for (int i = 0; i < nbud && !rc; i++)
                printf("  hot tier of %4d MB: %.1f%% of these lookups\n", budgets[i],
                       100.0 * hit[i]);
            const char *out = cli_get(o, n, "o");
            if (!rc && out) {
                if (dlrm_profile_write(out, d, counts, &err)) {
                    cli_print_error("profile", &err);
                    rc = 1;
                } else {
                    printf("wrote %s\n", out);
                }
            }
        }
        batch_file_free(&bf);
    }
    for (int t = 0; counts && t < d->num_tables; t++) free(counts[t]);
    free(counts);
    spine_model_free(m);
    return rc;
}
