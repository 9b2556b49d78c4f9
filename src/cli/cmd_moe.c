/* cmd_moe.c: `spine moe gen | info | run`: MoE transformer models from presets, their
 * description, and prefill + greedy decode (or an encoder pass) with static or dynamic gating,
 * reporting tokens/s per phase, the gating report and bandwidth / FLOP figures. */
#include "cli.h"

#include "../moe/moe.h"
#include "../moe/moe_trace.h"
#include "../kernels/kernels.h"
#include "../kernels/membw.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static bool parse_dtype(const char *v, spine_dtype *dt) {
    if (!v || strcmp(v, "f32") == 0)
        *dt = SPINE_DT_F32;
    else if (strcmp(v, "bf16") == 0)
        *dt = SPINE_DT_BF16;
    else {
        fprintf(stderr, "spine moe: --dtype must be f32 or bf16, not '%s'\n", v);
        return false;
    }
    return true;
}

/* --preset, --dtype, --moe-every, --layers, --experts into a config */
static bool preset_config(const cli_opt *o, int n, moe_config *c, spine_dtype *dt) {
    spine_error err = {0};
    if (moe_preset_config(cli_get(o, n, "preset"), c, &err)) {
        fprintf(stderr, "spine moe: %s\n", err.msg);
        return false;
    }
    if (!parse_dtype(cli_get(o, n, "dtype"), dt)) return false;
    c->dtype = *dt;
    const char *v;
    long long x;
    if ((v = cli_get(o, n, "moe-every"))) {
        if (!cli_int("--moe-every", v, 1, MOE_MAX_LAYERS, &x)) return false;
        c->moe_every = (int)x;
    }
    if ((v = cli_get(o, n, "layers"))) {
        if (!cli_int("--layers", v, 1, MOE_MAX_LAYERS, &x)) return false;
        c->layers = (int)x;
    }
    if ((v = cli_get(o, n, "experts"))) {
        if (!cli_int("--experts", v, c->top_k, MOE_MAX_EXPERTS, &x)) return false;
        c->experts = (int)x;
    }
    if ((v = cli_get(o, n, "top-k"))) {
        if (!cli_int("--top-k", v, 1, SPINE_MIN(8, c->experts), &x)) return false;
        c->top_k = (int)x;
    }
    return true;
}

static spine_pool *make_pool(const char *cmd, const char *v) {
    long long threads = 2;
    if (v && !cli_int("--threads", v, 1, 256, &threads)) return NULL;
    spine_error err = {0};
    spine_pool *pool = NULL;
    if (spine_pool_create((int)threads, &pool, &err)) {
        cli_print_error(cmd, &err);
        return NULL;
    }
    return pool;
}

static int moe_gen(int argc, char **argv) {
    cli_opt o[] = {
        {"preset", true, "moe-tiny | mixtral-mini | moe-lm", NULL},
        {"dtype", true, "weights: f32 (default) | bf16", NULL},
        {"moe-every", true, "an MoE block every N layers, dense SwiGLU elsewhere (default 1)",
         NULL},
        {"layers", true, "override the preset's layer count", NULL},
        {"experts", true, "override the preset's expert count", NULL},
        {"top-k", true, "override the preset's experts per token", NULL},
        {"seed", true, "random seed (default 1)", NULL},
        {"router-skew", true,
         "skew routing: scale router rows by (rank + 1)^-A (benchmarks of buffering, placement)",
         NULL},
        {"threads", true, "generation threads (default 2)", NULL},
        {"o", true, "output folder", NULL},
        {"help", false, "this text", NULL},
    };
    int n = (int)SPINE_ARRAY_LEN(o), npos;
    if (cli_parse("moe gen", argc, argv, o, n, NULL, 0, &npos)) return 2;
    if (cli_get(o, n, "help")) {
        cli_usage("usage: spine moe gen --preset NAME [--dtype f32|bf16] [--moe-every N] -o DIR", o,
                  n);
        return 0;
    }
    const char *out = cli_get(o, n, "o"), *v;
    if (!cli_get(o, n, "preset") || !out) {
        fprintf(stderr, "spine moe gen: --preset and -o are required\n");
        return 2;
    }
    moe_config c;
    spine_dtype dt;
    if (!preset_config(o, n, &c, &dt)) return 2;
    long long seed = 1;
    if ((v = cli_get(o, n, "seed")) && !cli_int("--seed", v, 0, INT64_MAX, &seed)) return 2;
    double skew = 0;
    if ((v = cli_get(o, n, "router-skew")) && !cli_double("--router-skew", v, 0, 10, &skew))
        return 2;
    spine_pool *pool = make_pool("moe gen", cli_get(o, n, "threads"));
    if (!pool) return 2;
    spine_error err = {0};
    spine_tensors ts;
    cli_progress gp = {.label = "generating weights"}, wp = {.label = "writing model.safetensors"};
    int rc = 1;
    char *cfg = NULL;
    if (spine_mkdir_p(out, &err) ||
        moe_gen_tensors(&c, dt, (uint64_t)seed, pool, cli_progress_cb, &gp, &ts, &err))
        goto done;
    moe_skew_router(&ts, &c, skew, (uint64_t)seed);
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    char meta[128];
    snprintf(meta, sizeof meta, "{\"format\":\"pt\",\"generator\":\"spine moe gen\"}");
    spine_status st = st_write(path, &ts, meta, cli_progress_cb, &wp, &err);
    st_free(&ts);
    if (st) goto done;
    cfg = moe_config_to_json(&c);
    snprintf(path, sizeof path, "%s/config.json", out);
    if (!cfg) {
        spine_fail(&err, SPINE_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (spine_write_file(path, cfg, strlen(cfg), &err)) goto done;
    printf("wrote %s (%s, %s)\n", out, cli_get(o, n, "preset"),
           dt == SPINE_DT_BF16 ? "bf16" : "f32");
    rc = 0;
done:
    if (rc) cli_print_error("moe gen", &err);
    free(cfg);
    spine_pool_free(pool);
    return rc;
}

static void print_info(const moe_model *m) {
    const moe_config *c = &m->c;
    int nmoe = 0;
    for (int i = 0; i < c->layers; i++) nmoe += m->layers[i].is_moe;
    printf("model type:     %s (%s weights)\n", c->model_type, spine_dtype_name(m->embed.dt));
    printf("layers:         %d (%d MoE, %d dense), hidden %d, FFN %d\n", c->layers, nmoe,
           c->layers - nmoe, c->hidden, c->inter);
    printf("attention:      %d heads, %d KV heads, head dim %d, RoPE theta %g, max %d positions\n",
           c->heads, c->kv_heads, c->head_dim, c->rope_theta, c->max_pos);
    printf("experts:        %d per MoE layer, top-%d%s\n", c->experts, c->top_k,
           c->norm_topk ? " (gate weights renormalised)" : "");
    printf("vocabulary:     %d%s\n", c->vocab, c->tie_embeddings ? " (tied embeddings)" : "");
    printf("parameters:     %.3f M (%.3f GB), experts %.3f GB\n", (double)m->params / 1e6,
           (double)m->weight_bytes / 1e9, (double)m->expert_bytes / 1e9);
    printf("decode touches: %.3f GB of weights per token (batch 1)\n",
           (double)moe_decode_bytes_per_token(m) / 1e9);
    printf("files:          %d safetensors file%s\n", m->nfiles, m->nfiles == 1 ? "" : "s");
    if (c->ignored[0]) printf("ignored keys:   %s\n", c->ignored);
}

static int moe_info(int argc, char **argv) {
    cli_opt o[] = {
        {"model", true, "model folder", NULL},
        {"help", false, "this text", NULL},
    };
    int n = (int)SPINE_ARRAY_LEN(o), npos;
    char *pos[1];
    if (cli_parse("moe info", argc, argv, o, n, pos, 1, &npos)) return 2;
    if (cli_get(o, n, "help")) {
        cli_usage("usage: spine moe info --model DIR", o, n);
        return 0;
    }
    const char *dir = cli_get(o, n, "model");
    if (!dir && npos) dir = pos[0];
    if (!dir) {
        fprintf(stderr, "spine moe info: --model is required\n");
        return 2;
    }
    spine_error err = {0};
    moe_model *m = NULL;
    if (moe_model_load(dir, SPINE_PLACE_MAP, &m, &err)) {
        cli_print_error("moe info", &err);
        return 1;
    }
    print_info(m);
    moe_model_free(m);
    return 0;
}

static bool add_copy(spine_tensors *ts, const char *name, spine_dtype dt, int nd,
                     const int64_t *shape, const void *src, size_t bytes) {
    void *p = spine_alloc_aligned(bytes ? bytes : 1);
    if (!p) return false;
    memcpy(p, src, bytes);
    if (st_add_owned(ts, name, dt, nd, shape, p, bytes)) return true;
    spine_free_aligned(p);
    return false;
}

static double median(double *v, int n) {
    spine_sort_doubles(v, (size_t)n);
    return spine_percentile(v, (size_t)n, 50.0);
}

static int moe_run(int argc, char **argv) {
    cli_opt o[] = {
        {"model", true, "model folder", NULL},
        {"preset", true, "or: generate this preset in memory (moe-tiny | mixtral-mini | moe-lm)",
         NULL},
        {"dtype", true, "with --preset: f32 (default) | bf16", NULL},
        {"moe-every", true, "with --preset: an MoE block every N layers", NULL},
        {"layers", true, "with --preset: override the layer count", NULL},
        {"experts", true, "with --preset: override the expert count", NULL},
        {"top-k", true, "with --preset: override experts per token", NULL},
        {"router-skew", true, "with --preset: skew routing (see moe gen)", NULL},
        {"seed", true, "with --preset / --random: random seed (default 1)", NULL},
        {"tokens", true, "token file: one sequence per line, ids separated by spaces", NULL},
        {"random", true, "or: random prompts of N tokens", NULL},
        {"batch", true, "sequences per batch (default: the file's, or 1)", NULL},
        {"gen", true, "greedy decode steps after the prompt (default 16; 0 with --encoder)", NULL},
        {"gating", true, "dynamic (default) | static", NULL},
        {"capacity-factor", true, "static gating: capacity = ceil(CF * k * S / E) (default 1)",
         NULL},
        {"encoder", false, "bidirectional attention over the whole sequence, no decode", NULL},
        {"threads", true, "threads (default 2)", NULL},
        {"repeat", true, "run N times, report medians (default 1)", NULL},
        {"warmup", true,
         "run N times first, not counted (an expert tier stays warm from them; default 0)", NULL},
        {"fresh-prompts", false,
         "with --random: every run (warm-up or counted) draws a new prompt, as a stream of "
         "requests would",
         NULL},
        {"placement", true, "weights: auto | map | huge (default auto)", NULL},
        {"logits-out", true, "write logits, generated ids and drops to a safetensors file", NULL},
        {"json", false, "print the report as one JSON object", NULL},
        {"expert-budget", true,
         "expert buffering: fast-tier bytes for all MoE layers' experts (e.g. 512M), as slots",
         NULL},
        {"expert-slots", true, "expert buffering: K fast-tier experts per MoE layer (default: all)",
         NULL},
        {"expert-policy", true, "eviction: lifo (default) | fifo | lru | lfu", NULL},
        {"expert-prefetch", false,
         "predict the next MoE layer's experts (report precision; with --expert-slots, load "
         "them early)",
         NULL},
        {"slow-gbps", true,
         "throttle expert copies to this GB/s (default 12, a PCIe link, for weights in memory; "
         "0 = unthrottled, the default for a mapped file)",
         NULL},
        {"expert-placement", true,
         "run experts on worker groups by this placement file (spine moe place -o)", NULL},
        {"trace-out", true, "record routing (experts per layer per batch) to a trace file", NULL},
        {"portable", false,
         "scalar / OpenBLAS weight products instead of the AVX2 or AVX-512 kernels", NULL},
        {"paired-membw", true,
         "measure sequential read bandwidth over a buffer of N MiB (>= 64) between decode steps, "
         "and report each step's weight GB/s against the probes on either side of it",
         NULL},
        {"product-shapes", false,
         "report the decode's weight products by shape: regions, MB each, GB/s, time with a "
         "thread idle",
         NULL},
        {"prefill-shapes", false,
         "report the prefill's weight products by shape: regions, GFLOP each, GFLOP/s, time "
         "with a thread idle",
         NULL},
        {"help", false, "this text", NULL},
    };
    int n = (int)SPINE_ARRAY_LEN(o), npos;
    if (cli_parse("moe run", argc, argv, o, n, NULL, 0, &npos)) return 2;
    if (cli_get(o, n, "help")) {
        cli_usage(
            "usage: spine moe run (--model DIR | --preset NAME) (--tokens FILE | --random N)\n"
            "                     [--batch B] [--gen G] [--gating static|dynamic] "
            "[--capacity-factor CF]",
            o, n);
        return 0;
    }
    const char *dir = cli_get(o, n, "model"), *preset = cli_get(o, n, "preset");
    const char *tokfile = cli_get(o, n, "tokens"), *v;
    if (!!dir == !!preset || !!tokfile == !!cli_get(o, n, "random")) {
        fprintf(stderr, "spine moe run: give --model or --preset, and --tokens or --random\n");
        return 2;
    }
    moe_run_opts ro = {.gating = MOE_GATING_DYNAMIC, .capacity_factor = 1.0};
    ro.encoder = cli_get(o, n, "encoder") != NULL;
    if ((v = cli_get(o, n, "gating"))) {
        if (strcmp(v, "static") == 0)
            ro.gating = MOE_GATING_STATIC;
        else if (strcmp(v, "dynamic") != 0) {
            fprintf(stderr, "spine moe run: --gating must be static or dynamic\n");
            return 2;
        }
    }
    if ((v = cli_get(o, n, "capacity-factor")) &&
        !cli_double("--capacity-factor", v, 1e-6, 1e5, &ro.capacity_factor))
        return 2;
    long long batch = 0, gen = ro.encoder ? 0 : 16, randn = 0, seed = 1, repeat = 1;
    if ((v = cli_get(o, n, "batch")) && !cli_int("--batch", v, 1, 65536, &batch)) return 2;
    if ((v = cli_get(o, n, "gen")) && !cli_int("--gen", v, 0, 1 << 20, &gen)) return 2;
    if ((v = cli_get(o, n, "random")) && !cli_int("--random", v, 1, 1 << 20, &randn)) return 2;
    if ((v = cli_get(o, n, "seed")) && !cli_int("--seed", v, 0, INT64_MAX, &seed)) return 2;
    if ((v = cli_get(o, n, "repeat")) && !cli_int("--repeat", v, 1, 1000, &repeat)) return 2;
    long long warmup = 0;
    if ((v = cli_get(o, n, "warmup")) && !cli_int("--warmup", v, 0, 1000, &warmup)) return 2;
    bool fresh = cli_get(o, n, "fresh-prompts") != NULL;
    long long pair_mib = 0;
    if ((v = cli_get(o, n, "paired-membw")) &&
        !cli_int("--paired-membw", v, 64, 1 << 20, &pair_mib))
        return 2;
    if (fresh && tokfile) {
        fprintf(stderr, "spine moe run: --fresh-prompts needs --random\n");
        return 2;
    }
    if (ro.encoder && gen > 0) {
        fprintf(stderr, "spine moe run: --encoder runs no decode steps (drop --gen)\n");
        return 2;
    }
    if ((v = cli_get(o, n, "expert-slots"))) {
        long long k;
        if (!cli_int("--expert-slots", v, 1, MOE_MAX_EXPERTS, &k)) return 2;
        ro.expert_slots = (int)k;
    }
    if ((v = cli_get(o, n, "expert-policy"))) {
        moe_policy p;
        if (moe_policy_parse(v, &p) || p == MOE_POLICY_BELADY) {
            fprintf(stderr, "spine moe run: --expert-policy must be lifo, fifo, lru or lfu\n");
            return 2;
        }
        ro.expert_policy = (int)p;
    }
    ro.expert_prefetch = cli_get(o, n, "expert-prefetch") != NULL;
    ro.slow_gbps = -1;
    if ((v = cli_get(o, n, "slow-gbps")) && !cli_double("--slow-gbps", v, 0, 1e4, &ro.slow_gbps))
        return 2;
    spine_placement placement;
    if (!cli_placement(cli_get(o, n, "placement"), &placement)) return 2;
    bool json = cli_get(o, n, "json") != NULL;
    mm_set_portable(cli_get(o, n, "portable") != NULL);
    const char *logits_out = cli_get(o, n, "logits-out");
    ro.logits_all = logits_out != NULL;

    /* prompts */
    spine_error err = {0};
    moe_tokens toks = {0};
    if (tokfile) {
        char *text = NULL;
        size_t len = 0;
        if (spine_read_file(tokfile, MOE_MAX_TOKEN_FILE, &text, &len, &err) ||
            moe_tokens_parse(text, len, (int)batch, &toks, &err)) {
            free(text);
            spine_error_prefix(&err, "%s: ", tokfile);
            cli_print_error("moe run", &err);
            return 1;
        }
        free(text);
        if (batch && toks.n_seq < batch) {
            fprintf(stderr, "spine moe run: %s holds %d sequences, --batch asks for %lld\n",
                    tokfile, toks.n_seq, batch);
            moe_tokens_free(&toks);
            return 1;
        }
    }
    spine_pool *pool = make_pool("moe run", cli_get(o, n, "threads"));
    if (!pool) {
        moe_tokens_free(&toks);
        return 2;
    }
    moe_model *m = NULL;
    int rc = 1;
    moe_ctx *ctx = NULL;
    moe_placement *xpl = NULL;
    int nxpl = 0;
    moe_trace trace = {0};
    float *logits = NULL, *dec_logits = NULL;
    int64_t *gen_ids = NULL, *step = NULL;
    double *tp = NULL, *td = NULL;
    double *pstat = NULL; /* per counted prefill: products s, products share, attention share */
    uint64_t *pdrops = NULL;
    uint8_t *pbuf = NULL; /* --paired-membw: the probe's buffer, its rates, the steps' fractions */
    size_t pbytes = (size_t)pair_mib << 20, npair = 0, nprobe = 0;
    double *pfrac = NULL, *pgbs = NULL;
    mm_shape_stat *pshapes = NULL; /* --prefill-shapes */
    int npshapes = 0;
    if (dir) {
        if (moe_model_load(dir, placement, &m, &err)) goto fail;
    } else {
        moe_config c;
        spine_dtype dt;
        if (!preset_config(o, n, &c, &dt)) {
            rc = 2;
            goto out;
        }
        spine_tensors ts;
        cli_progress gp = {.label = "generating weights"};
        double skew = 0;
        if ((v = cli_get(o, n, "router-skew")) && !cli_double("--router-skew", v, 0, 10, &skew)) {
            rc = 2;
            goto out;
        }
        if (moe_gen_tensors(&c, dt, (uint64_t)seed, pool, cli_progress_cb, &gp, &ts, &err))
            goto fail;
        moe_skew_router(&ts, &c, skew, (uint64_t)seed);
        if (moe_model_create(&c, &ts, &m, &err)) goto fail;
    }
    const moe_config *cf = &m->c;
    if (ro.slow_gbps < 0) ro.slow_gbps = moe_default_slow_gbps(m);
    if ((v = cli_get(o, n, "expert-budget"))) {
        uint64_t budget;
        if (cli_get(o, n, "expert-slots")) {
            fprintf(stderr, "spine moe run: --expert-budget or --expert-slots, not both\n");
            rc = 2;
            goto out;
        }
        if (!cli_bytes("--expert-budget", v, &budget)) {
            rc = 2;
            goto out;
        }
        ro.expert_slots = moe_slots_for_budget(m, budget);
        if (!ro.expert_slots) {
            spine_fail(&err, SPINE_ERR_INVALID,
                       "--expert-budget %s holds less than one expert per MoE layer", v);
            goto fail;
        }
        if (!json) printf("expert budget %s: %d slots per MoE layer\n", v, ro.expert_slots);
    }
    spine_rng prompt_rng;
    spine_rng_seed(&prompt_rng, (uint64_t)seed * 7919 + 17);
    if (!tokfile) {
        int B = batch ? (int)batch : 1;
        toks.ids = malloc((size_t)B * (size_t)randn * sizeof *toks.ids);
        if (!toks.ids) {
            spine_fail(&err, SPINE_ERR_NOMEM, "out of memory");
            goto fail;
        }
        toks.n_seq = B;
        toks.len = (int)randn;
        for (size_t i = 0; i < (size_t)B * randn; i++)
            toks.ids[i] = (int64_t)spine_rng_below(&prompt_rng, (uint64_t)cf->vocab);
    }
    int B = toks.n_seq, T = toks.len, G = (int)gen;
    ro.max_batch = B;
    ro.max_seq = T + G;
    if ((v = cli_get(o, n, "expert-placement"))) {
        char *text = NULL;
        size_t len = 0;
        if (spine_read_file(v, (size_t)64 << 20, &text, &len, &err) ||
            moe_placement_parse(text, len, &xpl, &nxpl, &err)) {
            free(text);
            spine_error_prefix(&err, "%s: ", v);
            goto fail;
        }
        free(text);
        ro.placement = xpl;
        ro.n_placement = nxpl;
    }
    if (moe_ctx_create(m, &ro, pool, &ctx, &err)) goto fail;
    mm_ctx *mmx = moe_ctx_mm(ctx);
    if (cli_get(o, n, "product-shapes") && mm_ctx_track_shapes(mmx, &err)) goto fail;
    /* the prefill's regions by shape in an array of their own, swapped in around each prefill */
    if (cli_get(o, n, "prefill-shapes")) {
        pshapes = calloc(MM_SHAPES_MAX, sizeof *pshapes);
        if (!pshapes) {
            spine_fail(&err, SPINE_ERR_NOMEM, "out of memory");
            goto fail;
        }
    }
    const char *trace_out = cli_get(o, n, "trace-out");
    if (trace_out) {
        const moe_ffn *f = &m->layers[cf->layers - 1].experts[0];
        moe_trace_init(&trace, SPINE_MAX(cf->experts, 1), cf->top_k,
                       3ull * f->w1.n * f->w1.k * spine_dtype_size(f->w1.dt));
        moe_ctx_set_trace(ctx, &trace); /* the first run (warm-up or not) is recorded */
    }
    size_t V = (size_t)cf->vocab;
    logits = malloc((size_t)B * (ro.logits_all ? (size_t)T : 1) * V * sizeof *logits);
    dec_logits = malloc(((size_t)G + 1) * B * V * sizeof *dec_logits);
    gen_ids = malloc(((size_t)G + 1) * B * sizeof *gen_ids);
    step = malloc((size_t)B * sizeof *step);
    pdrops = calloc((size_t)cf->layers, sizeof *pdrops);
    tp = calloc((size_t)repeat, sizeof *tp);
    td = calloc((size_t)repeat, sizeof *td);
    pstat = calloc((size_t)repeat * 3, sizeof *pstat);
    if (!logits || !dec_logits || !gen_ids || !step || !tp || !td || !pstat || !pdrops) {
        spine_fail(&err, SPINE_ERR_NOMEM, "out of memory (logits)");
        goto fail;
    }
    uint64_t bpt = moe_decode_bytes_per_token(m);
    if (pbytes) {
        if (B != 1 || G < 1) {
            spine_fail(&err, SPINE_ERR_INVALID,
                       "--paired-membw compares batch-1 decode steps: it needs --batch 1 and "
                       "--gen >= 1");
            goto fail;
        }
        pbuf = spine_alloc_huge(pbytes);
        pfrac = malloc((size_t)repeat * (size_t)G * sizeof *pfrac);
        pgbs = malloc((size_t)repeat * ((size_t)G + 1) * sizeof *pgbs);
        if (!pbuf || !pfrac || !pgbs) {
            spine_fail(&err, SPINE_ERR_NOMEM, "out of memory (--paired-membw %lld MiB)", pair_mib);
            goto fail;
        }
        memset(pbuf, 1, pbytes); /* touched: the probe reads memory, not the zero page */
    }
    uint64_t prefill_flops = 0;
    uint64_t dec_mm_ns = 0, dec_mm_wait = 0; /* counted decode steps: inside weight products */
    double dec_total = 0;
    moe_report pre = {0};  /* the prefill's share of the report, summed over repeats */
    moe_report base = {0}; /* the report and tier counters as the warm-up left them */
    moe_tier_stats ts0 = {0};
    for (int r = -(int)warmup; r < repeat; r++) {
        if (r == 0 && warmup > 0) {
            base = *moe_ctx_report(ctx);
            moe_ctx_tier_stats(ctx, &ts0);
        }
        if (fresh && r > -(int)warmup)
            for (size_t i = 0; i < (size_t)toks.n_seq * toks.len; i++)
                toks.ids[i] = (int64_t)spine_rng_below(&prompt_rng, (uint64_t)cf->vocab);
        moe_ctx_reset(ctx);
        uint64_t f0 = mmx->flops, pm0 = mmx->ns;
        moe_report r0 = *moe_ctx_report(ctx);
        double t0 = spine_now();
        mm_shape_stat *dshapes = mmx->shapes;
        const int ndshapes = mmx->nshapes;
        if (pshapes) { /* counted runs only */
            mmx->shapes = pshapes;
            mmx->nshapes = npshapes;
            mmx->shapes_on = r >= 0;
        }
        spine_status fst = moe_forward(ctx, toks.ids, B, T, logits, &err);
        if (pshapes) {
            npshapes = mmx->nshapes;
            mmx->shapes = dshapes;
            mmx->nshapes = ndshapes;
            mmx->shapes_on = false;
        }
        if (fst) goto fail;
        if (r >= 0) tp[r] = spine_now() - t0;
        const moe_report *r1 = moe_ctx_report(ctx);
        if (r < 0) r0 = *r1; /* a warm-up run: its prefill is not counted */
        pre.assignments += r1->assignments - r0.assignments;
        pre.dropped += r1->dropped - r0.dropped;
        pre.tokens_dropped += r1->tokens_dropped - r0.tokens_dropped;
        pre.slots_computed += r1->slots_computed - r0.slots_computed;
        pre.attn_ns += r1->attn_ns - r0.attn_ns;
        if (r >= 0) {
            pstat[r] = (double)(mmx->ns - pm0) / 1e9;
            pstat[repeat + r] = pstat[r] / tp[r];
            pstat[2 * repeat + r] = (double)(r1->attn_ns - r0.attn_ns) / 1e9 / tp[r];
        }
        pre.act_bytes_peak = r1->act_bytes_peak; /* the prefill's batch is the largest */
        prefill_flops = mmx->flops - f0;
        memcpy(pdrops, moe_ctx_last_drops(ctx), (size_t)cf->layers * sizeof *pdrops);
        /* greedy decode: the next id is the argmax of the last position's logits */
        const float *last = logits;
        size_t lstride = ro.logits_all ? (size_t)T * V : V;
        size_t loff = ro.logits_all ? (size_t)(T - 1) * V : 0;
        /* with --paired-membw, a probe before the first step and after each one; the steps'
         * own times add up to the decode time, the probes' do not count */
        double before = 0, dsum = 0;
        bool paired = pbuf && r >= 0;
        if (paired) {
            if (membw_seq(pool, spine_pool_size(pool), pbuf, pbytes, 0, &before, &err)) goto fail;
            pgbs[nprobe++] = before / 1e9;
        }
        t0 = spine_now();
        const uint64_t mm_ns0 = mmx->ns, mm_wait0 = mmx->wait_ns;
        mmx->shapes_on = r >= 0; /* counted decode steps only (the probes are no products) */
        for (int g = 0; g < G; g++) {
            double step0 = spine_now();
            for (int b = 0; b < B; b++) {
                const float *l = last + (size_t)b * lstride + loff;
                size_t best = 0;
                for (size_t i = 1; i < V; i++)
                    if (l[i] > l[best]) best = i;
                step[b] = (int64_t)best;
                gen_ids[(size_t)b * G + g] = (int64_t)best;
            }
            float *dl = dec_logits + (size_t)g * B * V;
            if (moe_forward(ctx, step, B, 1, dl, &err)) goto fail;
            last = dl;
            lstride = V;
            loff = 0;
            if (paired) {
                double dt = spine_now() - step0, after;
                dsum += dt;
                if (membw_seq(pool, spine_pool_size(pool), pbuf, pbytes, 0, &after, &err))
                    goto fail;
                pgbs[nprobe++] = after / 1e9;
                pfrac[npair++] = (double)bpt / dt / ((before + after) / 2);
                before = after;
            }
        }
        mmx->shapes_on = false;
        if (r >= 0) {
            td[r] = paired ? dsum : spine_now() - t0;
            dec_total += td[r];
            dec_mm_ns += mmx->ns - mm_ns0;
            dec_mm_wait += mmx->wait_ns - mm_wait0;
        }
        moe_ctx_set_trace(ctx, NULL);
    }
    if (trace_out) {
        char *text = moe_trace_to_text(&trace);
        spine_status tst = text ? spine_write_file(trace_out, text, strlen(text), &err)
                                : spine_fail(&err, SPINE_ERR_NOMEM, "out of memory (trace)");
        free(text);
        moe_trace_free(&trace);
        if (tst) goto fail;
    }
    double tpm = median(tp, (int)repeat), tdm = G ? median(td, (int)repeat) : 0.0;
    const moe_report *rep = moe_ctx_report(ctx);
    moe_report dec = {
        .assignments = rep->assignments - base.assignments - pre.assignments,
        .dropped = rep->dropped - base.dropped - pre.dropped,
        .tokens_dropped = rep->tokens_dropped - base.tokens_dropped - pre.tokens_dropped,
        .slots_computed = rep->slots_computed - base.slots_computed - pre.slots_computed,
        .attn_ns = rep->attn_ns - base.attn_ns - pre.attn_ns};
    double pair_frac = npair ? median(pfrac, (int)npair) : 0.0;
    double pair_gbs = nprobe ? median(pgbs, (int)nprobe) : 0.0;
    double per_run = 1.0 / (double)repeat;
    /* products in panels past the small-m kernel run on the AMX tile unit (SPINE_AMX=0: no) */
    const bool amx = m->panels && mm_amx_on();
    double waste = pre.assignments ? (double)pre.slots_computed / (double)pre.assignments : 0;
    double dwaste = dec.assignments ? (double)dec.slots_computed / (double)dec.assignments : 0;
    double prefill_tps = B * (double)T / tpm, decode_tps = G ? B * (double)G / tdm : 0.0;
    double gflops = (double)prefill_flops / tpm / 1e9;
    /* a decode step reads bpt bytes of weights (exactly at batch 1; an upper bound beyond) */
    double dec_gbs = G ? (double)bpt * (G / tdm) / 1e9 : 0.0;
    /* where a decode step's time goes: inside the weight products (and how fast they stream
     * while running), and the products' imbalance (first thread done to the last) */
    double mm_share = dec_total > 0 ? (double)dec_mm_ns / 1e9 / dec_total : 0.0;
    double mm_gbs = dec_mm_ns ? (double)bpt * (double)G * (double)repeat / (double)dec_mm_ns : 0.0;
    double mm_wait = dec_mm_ns ? (double)dec_mm_wait / (double)dec_mm_ns : 0.0;
    /* and a prefill's (medians over the counted runs, as its time): the products' share and
     * rate while they run, attention's share */
    double pmm_s = median(pstat, (int)repeat);
    double pmm_gflops = pmm_s > 0 ? (double)prefill_flops / pmm_s / 1e9 : 0.0;
    double pmm_share = median(pstat + repeat, (int)repeat);
    double pattn_share = median(pstat + 2 * repeat, (int)repeat);
    double dattn_share = dec_total > 0 ? (double)dec.attn_ns / 1e9 / dec_total : 0.0;
    const char *gname = ro.gating == MOE_GATING_STATIC ? "static" : "dynamic";
    moe_tier_stats ts;
    moe_ctx_tier_stats(ctx, &ts);
    ts.hits -= ts0.hits, ts.misses -= ts0.misses, ts.bytes_moved -= ts0.bytes_moved;
    ts.prefetched -= ts0.prefetched, ts.load_s -= ts0.load_s;
    ts.pred_hits -= ts0.pred_hits, ts.pred_total -= ts0.pred_total;
    ts.actual_total -= ts0.actual_total;
    double per = 1.0 / (double)repeat;
    if (json) {
        printf("{\"batch\": %d, \"prompt\": %d, \"gen\": %d, \"gating\": \"%s\", "
               "\"capacity_factor\": %g, \"threads\": %d, \"repeat\": %lld, \"warmup\": %lld, "
               "\"fresh_prompts\": %s, \"dtype\": \"%s\", "
               "\"prefill_s\": %.6f, \"prefill_tok_s\": %.3f, \"prefill_gflops\": %.3f, "
               "\"decode_s\": %.6f, \"decode_tok_s\": %.3f, \"decode_weight_gb_s\": %.3f, "
               "\"bytes_per_token\": %llu, \"assignments\": %.0f, \"dropped\": %.0f, "
               "\"tokens_dropped\": %.0f, \"waste_factor\": %.4f, \"act_bytes_peak\": %llu, "
               "\"decode_dropped\": %.0f, \"decode_waste_factor\": %.4f, \"expert_slots\": %d, "
               "\"expert_hits\": %.0f, \"expert_misses\": %.0f, \"expert_bytes_moved\": %.0f, "
               "\"expert_load_s\": %.4f, \"expert_fast_bytes\": %llu, \"expert_bytes_all\": %llu, "
               "\"slow_gbps\": %g, \"paired_steps\": %zu, \"paired_membw_gbps\": %.3f, "
               "\"paired_decode_fraction\": %.4f, \"decode_products_share\": %.4f, "
               "\"decode_products_weight_gb_s\": %.3f, \"decode_products_wait_share\": %.4f, "
               "\"decode_attention_share\": %.4f, \"prefill_products_share\": %.4f, "
               "\"prefill_products_gflops\": %.3f, \"prefill_attention_share\": %.4f, "
               "\"panels\": %s, \"isa\": \"%s\", \"amx\": %s",
               B, T, G, gname, ro.gating == MOE_GATING_STATIC ? ro.capacity_factor : 0.0,
               spine_pool_size(pool), repeat, warmup, fresh ? "true" : "false",
               spine_dtype_name(m->embed.dt), tpm, prefill_tps, gflops, tdm, decode_tps, dec_gbs,
               (unsigned long long)bpt, pre.assignments * per_run, pre.dropped * per_run,
               pre.tokens_dropped * per_run, waste, (unsigned long long)pre.act_bytes_peak,
               dec.dropped * per_run, dwaste, ro.expert_slots, ts.hits * per, ts.misses * per,
               ts.bytes_moved * per, ts.load_s * per,
               (unsigned long long)(ro.expert_slots ? ts.fast_bytes : m->expert_bytes),
               (unsigned long long)m->expert_bytes, ro.slow_gbps, npair, pair_gbs, pair_frac,
               mm_share, mm_gbs, mm_wait, dattn_share, pmm_share, pmm_gflops, pattn_share,
               m->panels ? "true" : "false", sls_isa_name((sls_isa)mm_isa()),
               amx ? "true" : "false");
        if (pshapes) {
            printf(", \"prefill_product_shapes\": [");
            for (int i = 0; i < npshapes; i++) {
                const mm_shape_stat *e = &pshapes[i];
                printf("%s{\"n\": %d, \"k\": %d, \"element_bytes\": %d, \"fused\": %s, "
                       "\"jobs\": %d, \"small_m\": %s, \"regions\": %llu, \"bytes\": %llu, "
                       "\"flops\": %llu, \"seconds\": %.6f, \"wait_seconds\": %.6f}",
                       i ? ", " : "", e->n, e->k, e->es, e->fused ? "true" : "false", e->jobs,
                       e->small ? "true" : "false", (unsigned long long)e->calls,
                       (unsigned long long)e->bytes, (unsigned long long)e->flops,
                       (double)e->ns / 1e9, (double)e->wait_ns / 1e9);
            }
            printf("]");
        }
        if (mmx->shapes) {
            printf(", \"decode_product_shapes\": [");
            for (int i = 0; i < mmx->nshapes; i++) {
                const mm_shape_stat *e = &mmx->shapes[i];
                printf("%s{\"n\": %d, \"k\": %d, \"element_bytes\": %d, \"fused\": %s, "
                       "\"jobs\": %d, \"small_m\": %s, \"regions\": %llu, \"bytes\": %llu, "
                       "\"seconds\": %.6f, \"wait_seconds\": %.6f}",
                       i ? ", " : "", e->n, e->k, e->es, e->fused ? "true" : "false", e->jobs,
                       e->small ? "true" : "false", (unsigned long long)e->calls,
                       (unsigned long long)e->bytes, (double)e->ns / 1e9, (double)e->wait_ns / 1e9);
            }
            printf("]");
        }
        printf("}\n");
    } else {
        printf("model: %s, %d layers, %d experts top-%d, %s weights%s, %d threads, %s kernels%s\n",
               dir ? dir : preset, cf->layers, cf->experts, cf->top_k,
               spine_dtype_name(m->embed.dt), m->panels ? " (in panels)" : "",
               spine_pool_size(pool), sls_isa_name((sls_isa)mm_isa()),
               amx ? ", AMX tiles for products past 8 rows" : "");
        printf("%s: %d x %d tokens in %.3f s: %.1f tok/s, %.1f GFLOP/s in weight products\n",
               ro.encoder ? "encode" : "prefill", B, T, tpm, prefill_tps, gflops);
        char cfs[32] = "";
        if (ro.gating == MOE_GATING_STATIC) snprintf(cfs, sizeof cfs, " CF %g", ro.capacity_factor);
        printf("         gating %s%s: %.0f assignments, %.0f dropped (%.0f tokens lost all of "
               "theirs), waste factor %.2f, MoE activation peak %.2f MB\n",
               gname, cfs, pre.assignments * per_run, pre.dropped * per_run,
               pre.tokens_dropped * per_run, waste, (double)pre.act_bytes_peak / 1e6);
        printf("         weight products: %.1f%% of the %s time, %.1f GFLOP/s while they run; "
               "attention %.1f%%\n",
               100 * pmm_share, ro.encoder ? "encode" : "prefill", pmm_gflops, 100 * pattn_share);
        if (pshapes) {
            printf("         weight products by shape (the first job's rows x columns, bytes per "
                   "weight; jobs per region; the counted runs together):\n");
            for (int i = 0; i < npshapes; i++) {
                const mm_shape_stat *e = &pshapes[i];
                printf("           %5d x %-5d %dB%s, %d job%s%s: %llu regions, %.3f GFLOP each, "
                       "%.1f GFLOP/s, %.2f GB/s of weights, a thread idle %.1f%% of the time\n",
                       e->n, e->k, e->es, e->fused ? " + w3" : "", e->jobs, e->jobs == 1 ? "" : "s",
                       e->small ? " (the first of 8 rows or fewer)" : "",
                       (unsigned long long)e->calls,
                       e->calls ? (double)e->flops / 1e9 / (double)e->calls : 0.0,
                       e->ns ? (double)e->flops / (double)e->ns : 0.0,
                       e->ns ? (double)e->bytes / (double)e->ns : 0.0,
                       e->ns ? 100.0 * (double)e->wait_ns / (double)e->ns : 0.0);
            }
        }
        if (G) {
            printf("decode:  %d x %d tokens in %.3f s: %.2f tok/s (%.2f GB/s of weights at %.3f "
                   "GB per step)\n",
                   B, G, tdm, decode_tps, dec_gbs, (double)bpt / 1e9);
            printf("         gating %s: %.0f assignments, %.0f dropped, waste factor %.2f\n", gname,
                   dec.assignments * per_run, dec.dropped * per_run, dwaste);
            printf(
                "         weight products: %.1f%% of the decode time, %.2f GB/s of weights "
                "while they run; %.1f%% of that time between the first thread done and the last; "
                "attention %.1f%%\n",
                100 * mm_share, mm_gbs, 100 * mm_wait, 100 * dattn_share);
            if (npair)
                printf("         paired with sequential reads between steps (median %.2f GB/s): "
                       "a step's weight GB/s is %.1f%% of the probes around it (median of %zu "
                       "steps)\n",
                       pair_gbs, 100 * pair_frac, npair);
            if (mmx->shapes) {
                printf("         weight products by shape (the first job's rows x columns, bytes "
                       "per weight; jobs per region):\n");
                for (int i = 0; i < mmx->nshapes; i++) {
                    const mm_shape_stat *e = &mmx->shapes[i];
                    printf("           %5d x %-5d %dB%s, %d job%s: %llu regions, %.2f MB each, "
                           "%.2f GB/s, a thread idle %.1f%% of the time\n",
                           e->n, e->k, e->es, e->fused ? " + w3" : "", e->jobs,
                           e->jobs == 1 ? "" : "s", (unsigned long long)e->calls,
                           e->calls ? (double)e->bytes / 1e6 / (double)e->calls : 0.0,
                           e->ns ? (double)e->bytes / (double)e->ns : 0.0,
                           e->ns ? 100.0 * (double)e->wait_ns / (double)e->ns : 0.0);
                }
            }
        }
        char slow[64];
        if (ro.slow_gbps > 0)
            snprintf(slow, sizeof slow, "copies at %g GB/s", ro.slow_gbps);
        else
            snprintf(slow, sizeof slow, "copies unthrottled");
        if (ro.expert_slots)
            printf(
                "experts: %d fast-tier slots per layer (%s, %s): %.0f hits, %.0f misses (hit rate "
                "%.3f), %.3f GB moved in %.3f s; fast tier %.3f GB of %.3f GB of experts "
                "(%.2fx less)\n",
                ts.slots, moe_policy_name((moe_policy)ro.expert_policy), slow, ts.hits * per,
                ts.misses * per,
                ts.hits + ts.misses ? (double)ts.hits / (double)(ts.hits + ts.misses) : 0.0,
                ts.bytes_moved * per / 1e9, ts.load_s * per, (double)ts.fast_bytes / 1e9,
                (double)m->expert_bytes / 1e9,
                ts.fast_bytes ? (double)m->expert_bytes / (double)ts.fast_bytes : 0.0);
        if (ro.expert_prefetch)
            printf("prefetch: next-layer prediction precision %.3f, recall %.3f (%.0f predicted, "
                   "%.0f used); %.0f experts loaded early\n",
                   ts.pred_total ? (double)ts.pred_hits / (double)ts.pred_total : 0.0,
                   ts.actual_total ? (double)ts.pred_hits / (double)ts.actual_total : 0.0,
                   ts.pred_total * per, ts.actual_total * per, ts.prefetched * per);
        int ng = 0;
        const uint64_t *gr = moe_ctx_group_rows(ctx, &ng);
        if (gr) {
            uint64_t tot = 0, mx = 0;
            for (int g = 0; g < ng; g++) tot += gr[g], mx = SPINE_MAX(mx, gr[g]);
            printf("groups:  %d worker groups ran", ng);
            for (int g = 0; g < ng; g++) printf(" %llu", (unsigned long long)gr[g]);
            printf(" assignment rows: largest share %.3f (fair %.3f)\n",
                   tot ? (double)mx / (double)tot : 0.0, 1.0 / ng);
        }
        if (ro.gating == MOE_GATING_STATIC)
            printf("static capacity: ceil(%g x k x S / E) slots per expert, S = tokens in a "
                   "step\n",
                   ro.capacity_factor);
        if (repeat > 1) printf("(medians of %lld runs)\n", repeat);
    }
    if (logits_out) {
        /* the last run's logits: prefill [B, T, V], decode [G, B, V], ids [B, G], and the
         * assignments each layer dropped in the prefill */
        spine_tensors out = {0};
        int64_t s1[3] = {B, T, (int64_t)V}, s2[3] = {G, B, (int64_t)V}, s3[2] = {B, G},
                s4[1] = {cf->layers};
        bool ok = add_copy(&out, "prefill_logits", SPINE_DT_F32, 3, s1, logits,
                           (size_t)B * T * V * sizeof(float)) &&
                  add_copy(&out, "prefill_drops", SPINE_DT_I64, 1, s4, pdrops,
                           (size_t)cf->layers * sizeof(int64_t));
        if (ok && G)
            ok = add_copy(&out, "decode_logits", SPINE_DT_F32, 3, s2, dec_logits,
                          (size_t)G * B * V * sizeof(float)) &&
                 add_copy(&out, "generated", SPINE_DT_I64, 2, s3, gen_ids,
                          (size_t)G * B * sizeof(int64_t));
        if (!ok) {
            st_free(&out);
            spine_fail(&err, SPINE_ERR_NOMEM, "out of memory (logits output)");
            goto fail;
        }
        spine_status st = st_write(logits_out, &out, NULL, NULL, NULL, &err);
        st_free(&out);
        if (st) goto fail;
    }
    rc = 0;
    goto out;
fail:
    cli_print_error("moe run", &err);
out:
    free(logits);
    free(dec_logits);
    free(gen_ids);
    free(step);
    free(tp);
    free(td);
    free(pstat);
    free(pdrops);
    free(pfrac);
    free(pgbs);
    free(pshapes);
    if (pbuf) spine_free_huge(pbuf, pbytes);
    moe_ctx_free(ctx);
    moe_trace_free(&trace);
    moe_model_free(m);
    moe_placements_free(xpl, nxpl);
    moe_tokens_free(&toks);
    spine_pool_free(pool);
    return rc;
}

int cmd_moe(int argc, char **argv) {
    const char *sub = argc > 0 ? argv[0] : "";
    if (strcmp(sub, "gen") == 0) return moe_gen(argc - 1, argv + 1);
    if (strcmp(sub, "info") == 0) return moe_info(argc - 1, argv + 1);
    if (strcmp(sub, "run") == 0) return moe_run(argc - 1, argv + 1);
    if (strcmp(sub, "trace") == 0 || strcmp(sub, "cache-sim") == 0 || strcmp(sub, "place") == 0)
        return cmd_moe_trace(sub, argc - 1, argv + 1);
    fprintf(stderr, "usage: spine moe gen | info | run | trace gen | cache-sim | place [options]"
                    "  ('spine moe run --help')\n");
    return 2;
}
