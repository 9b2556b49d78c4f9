/* moe_trace.c: routing traces: building, the text format (parse, write), synthetic generation.
 *
 * Format (docs/MOE.md): a header line
 *     spine-moe-trace 1 experts=E top_k=K expert_bytes=B
 * then one line per (batch, MoE layer): the batch index, the model layer index and E token
 * counts, separated by spaces. Batch indices never decrease; '#' lines and blank lines are
 * skipped. Every number is checked; errors name the line. */
#include "moe_trace.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

void moe_trace_init(moe_trace *t, int experts, int top_k, uint64_t expert_bytes) {
    memset(t, 0, sizeof *t);
    t->experts = experts;
    t->top_k = top_k;
    t->expert_bytes = expert_bytes;
}

void moe_trace_free(moe_trace *t) {
    free(t->step);
    free(t->layer);
    free(t->counts);
    memset(t, 0, sizeof *t);
}

spine_status moe_trace_add(moe_trace *t, int64_t step, int layer, const uint32_t *counts,
                           spine_error *err) {
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        int64_t *s = realloc(t->step, cap * sizeof *s);
        if (s) t->step = s;
        int *l = realloc(t->layer, cap * sizeof *l);
        if (l) t->layer = l;
        uint32_t *c = realloc(t->counts, cap * (size_t)t->experts * sizeof *c);
        if (c) t->counts = c;
        if (!s || !l || !c) return spine_fail(err, SPINE_ERR_NOMEM, "out of memory (trace)");
        t->cap = cap;
    }
    t->step[t->n] = step;
    t->layer[t->n] = layer;
    memcpy(t->counts + t->n * (size_t)t->experts, counts, (size_t)t->experts * sizeof *counts);
    t->n++;
    return SPINE_OK;
}

int moe_trace_layers(const moe_trace *t, int *layers) {
    int n = 0;
    for (size_t i = 0; i < t->n; i++) {
        int j;
        for (j = 0; j < n; j++)
            if (layers[j] == t->layer[i]) break;
        if (j == n && n < MOE_TRACE_MAX_LAYERS) layers[n++] = t->layer[i];
    }
    return n;
}

/* a decimal number in [0, max] at *p (spaces before it skipped); false when there is none */
static bool read_uint(const char **p, const char *end, uint64_t max, uint64_t *out) {
    const char *s = *p;
    while (s < end && (*s == ' ' || *s == '\t')) s++;
    if (s >= end || *s < '0' || *s > '9') return false;
    uint64_t v = 0;
    while (s < end && *s >= '0' && *s <= '9') {
        if (v > (max - (uint64_t)(*s - '0')) / 10) return false;
        v = v * 10 + (uint64_t)(*s++ - '0');
    }
    if (s < end && *s != ' ' && *s != '\t') return false;
    *p = s;
    *out = v;
    return true;
}

spine_status moe_trace_parse(const char *text, size_t len, moe_trace *out, spine_error *err) {
    memset(out, 0, sizeof *out);
    if (len > MOE_TRACE_MAX_BYTES)
        return spine_fail(err, SPINE_ERR_LIMIT, "trace larger than %zu bytes", MOE_TRACE_MAX_BYTES);
    const char *p = text, *end = text + len;
    int line = 0;
    bool header = false;
    uint32_t *row = NULL;
    spine_status st = SPINE_OK;
    while (p < end && !st) {
        const char *le = memchr(p, '\n', (size_t)(end - p));
        if (!le) le = end;
        const char *ls = p, *lend = le > ls && le[-1] == '\r' ? le - 1 : le;
        p = le < end ? le + 1 : end;
        line++;
        const char *q = ls;
        while (q < lend && (*q == ' ' || *q == '\t')) q++;
        if (q == lend || *q == '#') continue;
        if (!header) {
            unsigned e = 0, k = 0;
            unsigned long long b = 0;
            char tail;
            size_t n = (size_t)(lend - q);
            char buf[160];
            if (n >= sizeof buf ||
                (memcpy(buf, q, n), buf[n] = 0,
                 sscanf(buf, "spine-moe-trace 1 experts=%u top_k=%u expert_bytes=%llu %c", &e, &k,
                        &b, &tail) != 3))
                return spine_fail(err, SPINE_ERR_FORMAT,
                                  "line %d: expected 'spine-moe-trace 1 experts=E top_k=K "
                                  "expert_bytes=B'",
                                  line);
            if (e < 1 || e > MOE_TRACE_MAX_EXPERTS || k < 1 || k > e)
                return spine_fail(err, SPINE_ERR_LIMIT,
                                  "line %d: experts must be 1..%d and top_k 1..experts", line,
                                  MOE_TRACE_MAX_EXPERTS);
            moe_trace_init(out, (int)e, (int)k, b);
            row = malloc(e * sizeof *row);
            if (!row) return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
            header = true;
            continue;
        }
        uint64_t step, layer, v;
        if (!read_uint(&q, lend, INT64_MAX, &step) ||
            !read_uint(&q, lend, MOE_TRACE_MAX_LAYERS - 1, &layer)) {
            st = spine_fail(err, SPINE_ERR_FORMAT,
                            "line %d: expected a batch index and a layer index (0..%d)", line,
                            MOE_TRACE_MAX_LAYERS - 1);
            break;
        }
        if (out->n && (int64_t)step < out->step[out->n - 1]) {
            st = spine_fail(err, SPINE_ERR_FORMAT, "line %d: batch %llu comes after batch %lld",
                            line, (unsigned long long)step, (long long)out->step[out->n - 1]);
            break;
        }
        for (int e = 0; e < out->experts && !st; e++) {
            if (!read_uint(&q, lend, UINT32_MAX, &v))
                st = spine_fail(err, SPINE_ERR_FORMAT,
                                "line %d: expected %d token counts (count %d missing or bad)", line,
                                out->experts, e);
            else
                row[e] = (uint32_t)v;
        }
        if (st) break;
        while (q < lend && (*q == ' ' || *q == '\t')) q++;
        if (q != lend) {
            st = spine_fail(err, SPINE_ERR_FORMAT, "line %d: more than %d token counts", line,
                            out->experts);
            break;
        }
        st = moe_trace_add(out, (int64_t)step, (int)layer, row, err);
    }
    free(row);
    if (!st && !header) st = spine_fail(err, SPINE_ERR_FORMAT, "empty trace (no header line)");
    if (!st && out->n == 0) st = spine_fail(err, SPINE_ERR_FORMAT, "trace has no records");
    if (st) moe_trace_free(out);
    return st;
}

char *moe_trace_to_text(const moe_trace *t) {
    spine_buf b = {0};
    spine_buf_printf(&b, "spine-moe-trace 1 experts=%d top_k=%d expert_bytes=%llu\n", t->experts,
                     t->top_k, (unsigned long long)t->expert_bytes);
    spine_buf_puts(&b, "# batch layer, then tokens routed to experts 0..E-1\n");
    for (size_t i = 0; i < t->n && !b.failed; i++) {
        spine_buf_printf(&b, "%lld %d", (long long)t->step[i], t->layer[i]);
        const uint32_t *c = t->counts + i * (size_t)t->experts;
        for (int e = 0; e < t->experts; e++) spine_buf_printf(&b, " %u", c[e]);
        spine_buf_puts(&b, "\n");
    }
    if (b.failed) {
        spine_buf_free(&b);
        return NULL;
    }
    return b.data;
}

spine_status moe_trace_generate(const moe_trace_gen_opts *o, moe_trace *out, spine_error *err) {
    if (o->layers < 1 || o->layers > MOE_TRACE_MAX_LAYERS || o->experts < 1 ||
        o->experts > MOE_TRACE_MAX_EXPERTS || o->top_k < 1 || o->top_k > o->experts ||
        o->top_k > 8 || o->batches < 1 || o->tokens < 1 || !(o->alpha > 0.0) ||
        !(o->persistence >= 0.0 && o->persistence <= 1.0))
        return spine_fail(err, SPINE_ERR_INVALID,
                          "trace gen: layers 1..%d, experts 1..%d, top_k 1..min(8, experts), "
                          "batches and tokens >= 1, alpha > 0, persistence in [0, 1]",
                          MOE_TRACE_MAX_LAYERS, MOE_TRACE_MAX_EXPERTS);
    int E = o->experts;
    moe_trace_init(out, E, o->top_k, o->expert_bytes);
    int *perm = malloc((size_t)o->layers * E * sizeof *perm);
    uint32_t *row = malloc((size_t)E * sizeof *row);
    if (!perm || !row) {
        free(perm);
        free(row);
        return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    }
    spine_rng r;
    spine_rng_seed(&r, o->seed);
    for (int l = 0; l < o->layers; l++) {
        int *p = perm + (size_t)l * E;
        for (int e = 0; e < E; e++) p[e] = e;
        for (int e = E - 1; e > 0; e--) {
            int j = (int)spine_rng_below(&r, (uint64_t)e + 1), tmp = p[e];
            p[e] = p[j];
            p[j] = tmp;
        }
    }
    spine_zipf z;
    spine_zipf_init(&z, (uint64_t)E, o->alpha);
    int swaps = (int)lround((1.0 - o->persistence) * E);
    spine_status st = SPINE_OK;
    for (int b = 0; b < o->batches && !st; b++)
        for (int l = 0; l < o->layers && !st; l++) {
            int *p = perm + (size_t)l * E;
            if (b > 0 && E > 1)
                for (int s = 0; s < swaps; s++) {
                    int i = (int)spine_rng_below(&r, (uint64_t)E - 1), tmp = p[i];
                    p[i] = p[i + 1];
                    p[i + 1] = tmp;
                }
            memset(row, 0, (size_t)E * sizeof *row);
            for (int t = 0; t < o->tokens; t++) {
                int chosen[8], n = 0;
                while (n < o->top_k) {
                    int e = p[spine_zipf_draw(&z, &r)];
                    bool dup = false;
                    for (int i = 0; i < n; i++) dup |= chosen[i] == e;
                    if (!dup) chosen[n++] = e;
                }
                for (int i = 0; i < n; i++) row[chosen[i]]++;
            }
            st = moe_trace_add(out, b, l, row, err);
        }
    free(perm);
    free(row);
    if (st) moe_trace_free(out);
    return st;
}
