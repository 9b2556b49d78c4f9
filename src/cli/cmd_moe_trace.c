/* cmd_moe_trace.c: `spine moe trace gen`, `spine moe cache-sim` and `spine moe place`: routing
 * traces, expert-cache replay (one policy, or a sweep over slots and every policy with a table
 * and an SVG plot), and expert placement over worker groups. */
#include "cli.h"

#include "../moe/moe_trace.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static bool load_trace(const char *cmd, const char *path, moe_trace *t) {
    spine_error err = {0};
    char *text = NULL;
    size_t len = 0;
    if (!path) {
        fprintf(stderr, "spine %s: --trace is required\n", cmd);
        return false;
    }
    if (spine_read_file(path, MOE_TRACE_MAX_BYTES, &text, &len, &err) ||
        moe_trace_parse(text, len, t, &err)) {
        free(text);
        spine_error_prefix(&err, "%s: ", path);
        cli_print_error(cmd, &err);
        return false;
    }
    free(text);
    return true;
}

static int trace_gen(int argc, char **argv) {
    cli_opt o[] = {
        {"layers", true, "MoE layers (default 4)", NULL},
        {"experts", true, "experts per layer (default 64)", NULL},
        {"top-k", true, "experts per token (default 2)", NULL},
        {"batches", true, "batches (default 200)", NULL},
        {"tokens", true, "tokens per batch (default 256)", NULL},
        {"alpha", true, "Zipf skew of expert popularity (default 1.0)", NULL},
        {"persistence", true, "0..1: how much the hot set stays from batch to batch (default 0.9)",
         NULL},
        {"expert-bytes", true, "bytes of one expert, for bytes-moved figures (default 0)", NULL},
        {"seed", true, "random seed (default 1)", NULL},
        {"o", true, "output file", NULL},
        {"help", false, "this text", NULL},
    };
    int n = (int)SPINE_ARRAY_LEN(o), npos;
    if (cli_parse("moe trace gen", argc, argv, o, n, NULL, 0, &npos)) return 2;
    if (cli_get(o, n, "help")) {
        cli_usage("usage: spine moe trace gen [--experts 64 --alpha 1.0 --persistence 0.9] -o FILE",
                  o, n);
        return 0;
    }
    moe_trace_gen_opts g = {.layers = 4,
                            .experts = 64,
                            .top_k = 2,
                            .batches = 200,
                            .tokens = 256,
                            .alpha = 1.0,
                            .persistence = 0.9,
                            .seed = 1};
    long long x;
    const char *v, *out = cli_get(o, n, "o");
    if (!out) {
        fprintf(stderr, "spine moe trace gen: -o is required\n");
        return 2;
    }
#define INT_OPT(NAME, FIELD, LO, HI)                                                               \
    if ((v = cli_get(o, n, NAME))) {                                                               \
        if (!cli_int("--" NAME, v, LO, HI, &x)) return 2;                                          \
        g.FIELD = (int)x;                                                                          \
    }
    INT_OPT("layers", layers, 1, MOE_TRACE_MAX_LAYERS)
    INT_OPT("experts", experts, 1, MOE_TRACE_MAX_EXPERTS)
    INT_OPT("top-k", top_k, 1, 8)
    INT_OPT("batches", batches, 1, 10000000)
    INT_OPT("tokens", tokens, 1, 1 << 20)
#undef INT_OPT
    if ((v = cli_get(o, n, "alpha")) && !cli_double("--alpha", v, 1e-3, 100, &g.alpha)) return 2;
    if ((v = cli_get(o, n, "persistence")) && !cli_double("--persistence", v, 0, 1, &g.persistence))
        return 2;
    if ((v = cli_get(o, n, "seed"))) {
        if (!cli_int("--seed", v, 0, INT64_MAX, &x)) return 2;
        g.seed = (uint64_t)x;
    }
    if ((v = cli_get(o, n, "expert-bytes"))) {
        if (!cli_int("--expert-bytes", v, 0, INT64_MAX, &x)) return 2;
        g.expert_bytes = (uint64_t)x;
    }
    spine_error err = {0};
    moe_trace t;
    if (moe_trace_generate(&g, &t, &err)) {
        cli_print_error("moe trace gen", &err);
        return 1;
    }
    char *text = moe_trace_to_text(&t);
    int rc = 0;
    if (!text || spine_write_file(out, text, strlen(text), &err)) {
        if (!text) spine_fail(&err, SPINE_ERR_NOMEM, "out of memory");
        cli_print_error("moe trace gen", &err);
        rc = 1;
    } else {
        printf("wrote %s: %zu records (%d layers x %d batches), %d experts\n", out, t.n, g.layers,
               g.batches, g.experts);
    }
    free(text);
    moe_trace_free(&t);
    return rc;
}

static int cache_sim(int argc, char **argv) {
    cli_opt o[] = {
        {"trace", true, "routing trace (spine moe trace gen, spine moe run --trace-out)", NULL},
        {"slots", true, "resident experts per layer", NULL},
        {"policy", true, "lifo (inactive first, then LIFO) | fifo | lru | lfu | belady", NULL},
        {"sweep", false, "every slot count and every policy: a table, TSV and SVG plot", NULL},
        {"out", true, "with --sweep: file prefix for PREFIX.tsv and PREFIX.svg", NULL},
        {"help", false, "this text", NULL},
    };
    int n = (int)SPINE_ARRAY_LEN(o), npos;
    if (cli_parse("moe cache-sim", argc, argv, o, n, NULL, 0, &npos)) return 2;
    if (cli_get(o, n, "help")) {
        cli_usage("usage: spine moe cache-sim --trace FILE (--slots K --policy P | --sweep "
                  "[--out PREFIX])",
                  o, n);
        return 0;
    }
    bool sweep = cli_get(o, n, "sweep") != NULL;
    const char *v;
    long long slots = 0;
    moe_policy pol = MOE_POLICY_LIFO;
    if (!sweep) {
        if (!(v = cli_get(o, n, "slots"))) {
            fprintf(stderr, "spine moe cache-sim: give --slots K (or --sweep)\n");
            return 2;
        }
        if (!cli_int("--slots", v, 1, MOE_TRACE_MAX_EXPERTS, &slots)) return 2;
        if ((v = cli_get(o, n, "policy")) && moe_policy_parse(v, &pol)) {
            fprintf(stderr,
                    "spine moe cache-sim: --policy must be lifo, fifo, lru, lfu or belady\n");
            return 2;
        }
    }
    moe_trace t;
    if (!load_trace("moe cache-sim", cli_get(o, n, "trace"), &t)) return 1;
    spine_error err = {0};
    int rc = 0;
    if (!sweep) {
        moe_cache_stats s, b;
        if (moe_cache_simulate(&t, (int)slots, pol, &s, &err) ||
            moe_cache_simulate(&t, (int)slots, MOE_POLICY_BELADY, &b, &err)) {
            cli_print_error("moe cache-sim", &err);
            moe_trace_free(&t);
            return 1;
        }
        printf("policy %s, %lld slots per layer, %d experts: %llu requests, %llu hits, %llu misses "
               "(miss rate %.4f; Belady's MIN %llu misses, ratio %.3f)",
               moe_policy_name(pol), slots, t.experts, (unsigned long long)s.requests,
               (unsigned long long)s.hits, (unsigned long long)s.misses,
               s.requests ? (double)s.misses / (double)s.requests : 0.0,
               (unsigned long long)b.misses, b.misses ? (double)s.misses / (double)b.misses : 1.0);
        if (t.expert_bytes)
            printf(", %.3f GB moved", (double)s.misses * (double)t.expert_bytes / 1e9);
        printf("\n");
        moe_trace_free(&t);
        return 0;
    }
    int E = t.experts, np = MOE_POLICY_COUNT;
    double *xs = calloc((size_t)E, sizeof *xs), *ys[MOE_POLICY_COUNT];
    const char *names[MOE_POLICY_COUNT];
    bool ok = xs != NULL;
    for (int p = 0; p < np; p++) {
        ys[p] = calloc((size_t)E, sizeof **ys);
        names[p] = moe_policy_name((moe_policy)p);
        ok = ok && ys[p];
    }
    const char *prefix = cli_get(o, n, "out");
    FILE *tsv = NULL;
    char path[4096];
    if (ok && prefix) {
        snprintf(path, sizeof path, "%s.tsv", prefix);
        tsv = fopen(path, "w");
        if (!tsv) fprintf(stderr, "spine moe cache-sim: cannot write %s\n", path), rc = 1;
    }
    if (!ok) fprintf(stderr, "spine moe cache-sim: out of memory\n"), rc = 1;
    if (!rc) {
        printf("%6s", "slots");
        if (tsv) fprintf(tsv, "slots");
        for (int p = 0; p < np; p++) {
            printf(" %9s", names[p]);
            if (tsv) fprintf(tsv, "\t%s_miss_rate", names[p]);
        }
        printf("   (miss rate; lifo/belady)\n");
        if (tsv) fprintf(tsv, "\n");
    }
    for (int k = 1; k <= E && !rc; k++) {
        xs[k - 1] = k;
        moe_cache_stats s;
        for (int p = 0; p < np && !rc; p++) {
            if (moe_cache_simulate(&t, k, (moe_policy)p, &s, &err)) {
                cli_print_error("moe cache-sim", &err);
                rc = 1;
            }
            ys[p][k - 1] = s.requests ? (double)s.misses / (double)s.requests : 0.0;
        }
        if (rc) break;
        printf("%6d", k);
        if (tsv) fprintf(tsv, "%d", k);
        for (int p = 0; p < np; p++) {
            printf(" %9.4f", ys[p][k - 1]);
            if (tsv) fprintf(tsv, "\t%.6f", ys[p][k - 1]);
        }
        double bl = ys[MOE_POLICY_BELADY][k - 1];
        if (bl > 0) printf("   %.3f", ys[MOE_POLICY_LIFO][k - 1] / bl);
        printf("\n");
        if (tsv) fprintf(tsv, "\n");
    }
    if (tsv && fclose(tsv) != 0) rc = 1;
    if (!rc && prefix) {
        snprintf(path, sizeof path, "%s.svg", prefix);
        char title[160];
        snprintf(title, sizeof title, "Expert cache: miss rate vs slots per layer (%d experts)", E);
        if (!cli_svg_lines(path, title, "resident experts per layer", "miss rate", np, names, E, xs,
                           (const double *const *)ys)) {
            fprintf(stderr, "spine moe cache-sim: cannot write %s\n", path);
            rc = 1;
        } else {
            printf("wrote %s.tsv and %s.svg\n", prefix, prefix);
        }
    }
    free(xs);
    for (int p = 0; p < np; p++) free(ys[p]);
    moe_trace_free(&t);
    return rc;
}

static bool write_placement(const char *path, const moe_placement *pl, int nl, spine_error *err) {
    char *text = moe_placement_to_text(pl, nl);
    if (!text) return !spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    spine_status st = spine_write_file(path, text, strlen(text), err);
    free(text);
    return st == SPINE_OK;
}

static int place(int argc, char **argv) {
    cli_opt o[] = {
        {"trace", true, "routing trace", NULL},
        {"groups", true, "worker groups D", NULL},
        {"policy", true, "rr | greedy | anticorr | replicate | all (default all)", NULL},
        {"fit", true, "fraction of the trace to fit on; the rest evaluates (default 0.5)", NULL},
        {"o", true, "write the placement (one policy) to this file", NULL},
        {"help", false, "this text", NULL},
    };
    int n = (int)SPINE_ARRAY_LEN(o), npos;
    if (cli_parse("moe place", argc, argv, o, n, NULL, 0, &npos)) return 2;
    if (cli_get(o, n, "help")) {
        cli_usage("usage: spine moe place --trace FILE --groups D [--policy P] [--fit 0.5]", o, n);
        return 0;
    }
    const char *v;
    long long groups = 0;
    double fit = 0.5;
    if (!(v = cli_get(o, n, "groups")) ||
        !cli_int("--groups", v, 1, MOE_TRACE_MAX_EXPERTS, &groups)) {
        if (!v) fprintf(stderr, "spine moe place: --groups is required\n");
        return 2;
    }
    if ((v = cli_get(o, n, "fit")) && !cli_double("--fit", v, 0.01, 0.99, &fit)) return 2;
    int first = 0, last = MOE_PLACE_COUNT - 1;
    if ((v = cli_get(o, n, "policy")) && strcmp(v, "all") != 0) {
        moe_place_policy p;
        if (moe_place_parse(v, &p)) {
            fprintf(stderr, "spine moe place: --policy must be rr, greedy, anticorr, replicate or "
                            "all\n");
            return 2;
        }
        first = last = (int)p;
    }
    const char *out = cli_get(o, n, "o");
    if (out && first != last) {
        fprintf(stderr, "spine moe place: -o needs one --policy\n");
        return 2;
    }
    moe_trace t;
    if (!load_trace("moe place", cli_get(o, n, "trace"), &t)) return 1;
    size_t fit_end = (size_t)floor(fit * (double)t.n);
    int rc = 0;
    double rr_max = 0, rr_avg = 0;
    printf("%d experts on %lld groups (fair share %.4f); fitted on %zu records, judged on %zu\n",
           t.experts, groups, 1.0 / (double)groups, fit_end, t.n - fit_end);
    printf("%-10s %9s %13s\n", "policy", "Max Load", "Avg Max Load");
    for (int p = first; p <= last && !rc; p++) {
        spine_error err = {0};
        moe_placement *pl = NULL;
        int nl = 0;
        moe_place_report r;
        if (moe_place(&t, (int)groups, (moe_place_policy)p, fit_end, &pl, &nl, &r, &err)) {
            cli_print_error("moe place", &err);
            rc = 1;
            break;
        }
        printf("%-10s %9.4f %13.4f", moe_place_name((moe_place_policy)p), r.max_load,
               r.avg_max_load);
        if (p == MOE_PLACE_RR)
            rr_max = r.max_load, rr_avg = r.avg_max_load;
        else if (rr_max > 0)
            printf("   (%.1f%% / %.1f%% lower than rr)", 100 * (1 - r.max_load / rr_max),
                   100 * (1 - r.avg_max_load / rr_avg));
        printf("\n");
        if (out && !write_placement(out, pl, nl, &err)) {
            cli_print_error("moe place", &err);
            rc = 1;
        }
        moe_placements_free(pl, nl);
    }
    moe_trace_free(&t);
    return rc;
}

int cmd_moe_trace(const char *sub, int argc, char **argv) {
    if (strcmp(sub, "trace") == 0) {
        if (argc > 0 && strcmp(argv[0], "gen") == 0) return trace_gen(argc - 1, argv + 1);
        fprintf(stderr, "usage: spine moe trace gen [options] -o FILE\n");
        return 2;
    }
    if (strcmp(sub, "cache-sim") == 0) return cache_sim(argc, argv);
    return place(argc, argv);
}
