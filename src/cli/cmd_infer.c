/* cmd_infer.c: `spine infer`: run a model over a Criteo TSV file (streamed, bad lines reported
 * with line and column, their outputs 'nan', nothing else lost) or a safetensors batch file. */
#include "cli.h"

#include "../io/io.h"
#include "../model/dlrm.h"

#include <stdio.h>
#include <errno.h>
#include <stdlib.h>

typedef struct tsv_state {
    spine_ctx *ctx;
    const spine_model_desc *d;
    int cap;    /* lines per chunk */
    int nlines; /* lines held */
    int nvalid;
    bool *ok;        /* per line */
    float *dense;    /* cap x num_dense */
    int64_t *idx;    /* cap x num_tables (sample-major while parsing) */
    int64_t *values; /* table-major for the batch */
    int32_t *lengths;
    float *out;
    unsigned flags;
} tsv_state;

static int flush(tsv_state *s, FILE *out, spine_error *err) {
    const spine_model_desc *d = s->d;
    int B = s->nvalid, k = 0;
    /* compact valid lines: dense rows move up, indices transpose to table-major */
    for (int i = 0; i < s->nlines; i++) {
        if (!s->ok[i]) continue;
        if (k != i)
            memmove(s->dense + (size_t)k * d->num_dense, s->dense + (size_t)i * d->num_dense,
                    (size_t)d->num_dense * sizeof *s->dense);
        for (int t = 0; t < d->num_tables; t++)
            s->values[(size_t)t * B + k] = s->idx[(size_t)i * d->num_tables + t];
        k++;
    }
    for (size_t j = 0; j < (size_t)B * d->num_tables; j++) s->lengths[j] = 1;
    spine_batch b = {B, s->dense, s->lengths, s->values, NULL};
    if (B > 0 && spine_ctx_run(s->ctx, &b, s->out, s->flags, err)) return -1;
    k = 0;
    for (int i = 0; i < s->nlines; i++) {
        if (s->ok[i])
            fprintf(out, "%.9g\n", s->out[k++]);
        else
            fputs("nan\n", out);
    }
    s->nlines = s->nvalid = 0;
    return 0;
}

static int infer_tsv(const char *path, FILE *in, FILE *out, spine_ctx *ctx, const spine_model *m,
                     int cap, unsigned flags) {
    const spine_model_desc *d = spine_model_describe(m);
    tsv_state s = {.ctx = ctx, .d = d, .cap = cap, .flags = flags};
    spine_error err = {0};
    int64_t *rows = malloc((size_t)d->num_tables * sizeof *rows);
    s.ok = malloc((size_t)cap * sizeof *s.ok);
    s.dense = malloc((size_t)cap * (size_t)d->num_dense * sizeof *s.dense);
    s.idx = malloc((size_t)cap * (size_t)d->num_tables * sizeof *s.idx);
    s.values = malloc((size_t)cap * (size_t)d->num_tables * sizeof *s.values);
    s.lengths = malloc((size_t)cap * (size_t)d->num_tables * sizeof *s.lengths);
    s.out = malloc((size_t)cap * sizeof *s.out);
    line_reader r;
    int rc = 0;
    int64_t bad = 0, total = 0;
    if (!rows || !s.ok || !s.dense || !s.idx || !s.values || !s.lengths || !s.out ||
        line_reader_init(&r, in, &err)) {
        fprintf(stderr, "spine infer: out of memory\n");
        rc = 1;
        goto done;
    }
    for (int t = 0; t < d->num_tables; t++) rows[t] = d->tables[t].rows;
    const char *line;
    size_t len;
    bool too_long;
    int got;
    while ((got = line_reader_next(&r, &line, &len, &too_long)) == 1) {
        total++;
        int i = s.nlines++;
        criteo_error ce;
        if (too_long) {
            fprintf(stderr, "%s:%lld: error: line longer than %zu bytes\n", path,
                    (long long)r.lineno, LINE_MAX_BYTES);
            s.ok[i] = false;
            bad++;
        } else if (criteo_parse_line(line, len, d->num_dense, d->num_tables, rows,
                                     s.dense + (size_t)i * d->num_dense,
                                     s.idx + (size_t)i * d->num_tables, &ce) != 0) {
            fprintf(stderr, "%s:%lld:%d: error: field %d: %s\n", path, (long long)r.lineno,
                    ce.column, ce.field, ce.msg);
            s.ok[i] = false;
            bad++;
        } else {
            s.ok[i] = true;
            /* keep valid lines packed by index so flush can compact in place */
            s.nvalid++;
        }
        if (s.nlines == cap && flush(&s, out, &err)) {
            cli_print_error("infer", &err);
            rc = 1;
            goto done;
        }
    }
    if (got < 0) {
        fprintf(stderr, "spine infer: %s: read error\n", path);
        rc = 1;
        goto done;
    }
    if (s.nlines && flush(&s, out, &err)) {
        cli_print_error("infer", &err);
        rc = 1;
        goto done;
    }
    if (bad) {
        fprintf(
            stderr,
            "spine infer: %lld of %lld lines malformed (reported above); their outputs are 'nan'\n",
            (long long)bad, (long long)total);
        rc = 1;
    }
done:
    line_reader_free(&r);
    free(rows);
    free(s.ok);
    free(s.dense);
    free(s.idx);
    free(s.values);
    free(s.lengths);
    free(s.out);
    return rc;
}

static bool is_safetensors(const char *path) {
    size_t n = strlen(path);
    return n > 12 && strcmp(path + n - 12, ".safetensors") == 0;
}

int cmd_infer(int argc, char **argv) {
    cli_opt o[] = {
        {"model", true, "model folder", NULL},
        {"input", true, "Criteo TSV file ('-' for stdin) or a .safetensors batch", NULL},
        {"o", true, "output file (default stdout): one value per line", NULL},
        {"logits", false, "write logits instead of probabilities", NULL},
        {"batch", true, "samples per run (default 256)", NULL},
        {"threads", true, "threads (default 1)", NULL},
        {"placement", true, "tables: auto (default) | map | huge", NULL},
        {"help", false, "this text", NULL},
    };
    int n = (int)SPINE_ARRAY_LEN(o), npos;
    char *pos[1];
    if (cli_parse("infer", argc, argv, o, n, pos, 0, &npos)) return 2;
    if (cli_get(o, n, "help")) {
        cli_usage("usage: spine infer --model DIR --input FILE [-o OUT]", o, n);
        return 0;
    }
    const char *dir = cli_get(o, n, "model"), *input = cli_get(o, n, "input"),
               *outp = cli_get(o, n, "o"), *v;
    if (!dir || !input) {
        fprintf(stderr, "spine infer: --model and --input are required\n");
        return 2;
    }
    long long batch = 256, threads = 1;
    if ((v = cli_get(o, n, "batch")) && !cli_int("--batch", v, 1, 1 << 20, &batch)) return 2;
    if ((v = cli_get(o, n, "threads")) && !cli_int("--threads", v, 1, 256, &threads)) return 2;
    unsigned flags = cli_get(o, n, "logits") ? SPINE_RUN_LOGITS : 0;
    spine_load_opts lo = {0};
    if (!cli_placement(cli_get(o, n, "placement"), &lo.placement)) return 2;
    spine_error err = {0};
    spine_model *m = NULL;
    spine_pool *pool = NULL;
    spine_ctx *ctx = NULL;
    FILE *out = stdout, *in = NULL;
    int rc = 1;
    if (spine_model_load_opts(dir, &lo, &m, &err) || spine_pool_create((int)threads, &pool, &err) ||
        spine_ctx_create(m, (int)batch, pool, &ctx, &err)) {
        cli_print_error("infer", &err);
        goto done;
    }
    if (outp && !(out = fopen(outp, "w"))) {
        fprintf(stderr, "spine infer: %s: %s\n", outp, strerror(errno));
        out = NULL;
        goto done;
    }
    const spine_model_desc *d = spine_model_describe(m);
    if (is_safetensors(input)) {
        batch_file bf;
        if (batch_file_open(input, d->num_dense, d->num_tables, &bf, &err) ||
            spine_batch_validate(m, &bf.batch, bf.nvalues, &err)) {
            cli_print_error("infer", &err);
            goto done;
        }
        float *res = malloc(((size_t)bf.batch.batch + 1) * sizeof *res);
        if (!res || spine_ctx_run(ctx, &bf.batch, res, flags, &err)) {
            if (!res) spine_fail(&err, SPINE_ERR_NOMEM, "out of memory");
            cli_print_error("infer", &err);
            free(res);
            batch_file_free(&bf);
            goto done;
        }
        for (int32_t i = 0; i < bf.batch.batch; i++) fprintf(out, "%.9g\n", res[i]);
        free(res);
        batch_file_free(&bf);
        rc = 0;
    } else {
        in = strcmp(input, "-") == 0 ? stdin : fopen(input, "rb");
        if (!in) {
            fprintf(stderr, "spine infer: %s: %s\n", input, strerror(errno));
            goto done;
        }
        rc = infer_tsv(input, in, out, ctx, m, (int)batch, flags);
    }
    if (fflush(out) != 0) {
        fprintf(stderr, "spine infer: write failed: %s\n", strerror(errno));
        rc = 1;
    }
done:
    if (in && in != stdin) fclose(in);
    if (out && out != stdout) fclose(out);
    spine_ctx_free(ctx);
    spine_pool_free(pool);
    spine_model_free(m);
    return rc;
}
