/* cmd_model.c: `spine model gen` (a model folder from a preset) and `spine model info`. */
#include "cli.h"

#include "../model/dlrm.h"

#include <stdio.h>
#include <stdlib.h>

static int model_gen(int argc, char **argv) {
    cli_opt o[] = {
        {"preset", true, "tiny | rmc1 | rmc2 | rmc3 | dlrm-kaggle", NULL},
        {"rows-scale", true, "multiply every table's rows by F (default 1)", NULL},
        {"dtype", true, "embedding rows: f32 (default) | f16 | int8 | int4", NULL},
        {"seed", true, "random seed (default 1)", NULL},
        {"threads", true, "generation threads (default 2)", NULL},
        {"o", true, "output folder", NULL},
        {"help", false, "this text", NULL},
    };
    int n = (int)SPINE_ARRAY_LEN(o), npos;
    char *pos[1];
    if (cli_parse("model gen", argc, argv, o, n, pos, 0, &npos)) return 2;
    if (cli_get(o, n, "help")) {
        cli_usage(
            "usage: spine model gen --preset NAME [--rows-scale F] [--dtype T] [--seed N] -o DIR",
            o, n);
        return 0;
    }
    dlrm_gen_opts g;
    if (!cli_gen_opts("model gen", o, n, &g)) return 2;
    const char *out = cli_get(o, n, "o"), *v;
    if (!g.preset || !out) {
        fprintf(stderr, "spine model gen: --preset and -o are required\n");
        return 2;
    }
    long long threads = 2;
    if ((v = cli_get(o, n, "threads")) && !cli_int("--threads", v, 1, 256, &threads)) return 2;
    spine_error err = {0};
    spine_pool *pool = NULL;
    if (spine_pool_create((int)threads, &pool, &err)) {
        cli_print_error("model gen", &err);
        return 1;
    }
    cli_progress prog = {.label = "generating", .last_decile = -1};
    cli_progress wprog = {.label = "writing", .last_decile = -1};
    g.pool = pool;
    g.progress = cli_progress_cb;
    g.progress_arg = &prog;
    g.write_progress = cli_progress_cb;
    g.write_progress_arg = &wprog;
    double t0 = spine_now();
    spine_status st = dlrm_gen_write(&g, out, &err);
    spine_pool_free(pool);
    if (st) {
        cli_print_error("model gen", &err);
        return 1;
    }
    fprintf(stderr, "wrote %s (preset %s, seed %llu) in %.1f s\n", out, g.preset,
            (unsigned long long)g.seed, spine_now() - t0);
    return 0;
}

static void print_widths(int in, const int *w, int n) {
    printf("%d", in);
    for (int i = 0; i < n; i++) printf(" -> %d", w[i]);
}

static int model_info(int argc, char **argv) {
    cli_opt o[] = {{"help", false, "this text", NULL}};
    char *pos[1];
    int npos;
    if (cli_parse("model info", argc, argv, o, 1, pos, 1, &npos)) return 2;
    if (o[0].val || npos != 1) {
        printf("usage: spine model info DIR\n");
        return o[0].val ? 0 : 2;
    }
    spine_error err = {0};
    spine_model *m;
    spine_load_opts lo = {SPINE_PLACE_MAP}; /* describing needs no copy */
    if (spine_model_load_opts(pos[0], &lo, &m, &err)) {
        cli_print_error("model info", &err);
        return 1;
    }
    const spine_model_desc *d = spine_model_describe(m);
    printf("model:        %s (dlrm)\n", d->name);
    printf("dense:        %d features\n", d->num_dense);
    printf("bottom MLP:   ");
    print_widths(d->num_dense, d->bottom, d->n_bottom);
    printf(" (ReLU after every layer)\n");
    printf("embeddings:   %d tables, dim %d, %d lookups per table (typical)\n", d->num_tables,
           d->emb_dim, d->lookups_per_table);
    if (d->interaction == SPINE_INTERACT_DOT)
        printf("interaction:  dot over %d features%s -> %d\n", d->num_tables + 1,
               d->interaction_self ? " (with self)" : "", d->interaction_dim);
    else
        printf("interaction:  cat -> %d\n", d->interaction_dim);
    printf("top MLP:      ");
    print_widths(d->interaction_dim, d->top, d->n_top);
    printf(" (ReLU between, sigmoid at the end)\n");
    printf("parameters:   MLP %llu (%.2f MB f32), embeddings %llu (%.3f GB stored)\n",
           (unsigned long long)d->mlp_params, (double)d->mlp_params * 4 / 1e6,
           (unsigned long long)d->emb_params, (double)d->emb_bytes / 1e9);
    printf("\n  %-4s %-16s %12s %6s %8s %14s\n", "#", "name", "rows", "dtype", "pooling", "bytes");
    for (int t = 0; t < d->num_tables; t++) {
        const spine_table_desc *td = &d->tables[t];
        printf("  %-4d %-16s %12lld %6s %8s %14llu\n", t, td->name, (long long)td->rows,
               spine_rowtype_name(td->rowtype), td->pooling == SPINE_POOL_MEAN ? "mean" : "sum",
               (unsigned long long)td->rows * spine_row_bytes(td->rowtype, d->emb_dim));
    }
    spine_model_free(m);
    return 0;
}

int cmd_model(int argc, char **argv) {
    if (argc >= 1 && strcmp(argv[0], "gen") == 0) return model_gen(argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "info") == 0) return model_info(argc - 1, argv + 1);
    fprintf(stderr, "usage: spine model gen|info ...\n");
    return 2;
}
