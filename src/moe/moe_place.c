/* moe_place.c: expert placement over D worker groups, fitted on one part of a routing trace and
 * judged on another (the paper's protocol: fit on the first half, evaluate on the second).
 *
 *  rr         expert e to group e mod D (the baseline);
 *  greedy     experts by mean historical load, heaviest first, each to the least-loaded group
 *             that still has a free slot (ceil(E / D) slots per group);
 *  anticorr   greedy on cost = D x group load (1 = a fair share) + 0.5 x the mean Pearson
 *             correlation of the expert's per-batch load with the experts already there;
 *  replicate  greedy with one extra slot per group, the D heaviest experts placed twice (on
 *             different groups), a token for a replicated expert split evenly over its copies.
 *
 * Load of a group in a batch = its share of the batch's token-expert assignments. Max Load is
 * the largest such share over groups and batches; Avg Max Load the mean over batches of the
 * largest share. A fair split gives 1/D. */
#include "moe_trace.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static const char *const place_names[MOE_PLACE_COUNT] = {"rr", "greedy", "anticorr", "replicate"};

const char *moe_place_name(moe_place_policy p) {
    return (unsigned)p < MOE_PLACE_COUNT ? place_names[p] : "?";
}

int moe_place_parse(const char *s, moe_place_policy *out) {
    for (int i = 0; i < MOE_PLACE_COUNT; i++)
        if (strcmp(s, place_names[i]) == 0) {
            *out = (moe_place_policy)i;
            return 0;
        }
    return -1;
}

void moe_placements_free(moe_placement *pl, int n) {
    if (!pl) return;
    for (int i = 0; i < n; i++) free(pl[i].group);
    free(pl);
}

/* per-batch load shares of each expert of one layer over records [0, end): sh[b * E + e] */
static size_t shares(const moe_trace *t, int layer, size_t from, size_t end, double *sh) {
    size_t nb = 0;
    int E = t->experts;
    for (size_t i = from; i < end; i++) {
        if (t->layer[i] != layer) continue;
        const uint32_t *c = t->counts + i * (size_t)E;
        double tot = 0;
        for (int e = 0; e < E; e++) tot += c[e];
        for (int e = 0; e < E; e++) sh[nb * E + e] = tot > 0 ? c[e] / tot : 0.0;
        nb++;
    }
    return nb;
}

static double pearson(const double *sh, size_t nb, int E, int a, int b) {
    double ma = 0, mb = 0;
    for (size_t i = 0; i < nb; i++) ma += sh[i * E + a], mb += sh[i * E + b];
    ma /= (double)nb, mb /= (double)nb;
    double sab = 0, saa = 0, sbb = 0;
    for (size_t i = 0; i < nb; i++) {
        double x = sh[i * E + a] - ma, y = sh[i * E + b] - mb;
        sab += x * y, saa += x * x, sbb += y * y;
    }
    return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : 0.0;
}

static const double *sort_key;
static int by_load_desc(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    if (sort_key[x] != sort_key[y]) return sort_key[x] < sort_key[y] ? 1 : -1;
    return x - y;
}

static void fit_layer(const moe_trace *t, int D, moe_place_policy p, const double *sh, size_t nb,
                      moe_placement *pl, double *mean, int *order, double *gload, int *gcount) {
    int E = t->experts, C = pl->max_copies;
    for (int i = 0; i < E * C; i++) pl->group[i] = -1;
    if (p == MOE_PLACE_RR) {
        for (int e = 0; e < E; e++) pl->group[e * C] = e % D;
        return;
    }
    for (int e = 0; e < E; e++) {
        mean[e] = 0;
        for (size_t b = 0; b < nb; b++) mean[e] += sh[b * E + e];
        mean[e] = nb ? mean[e] / (double)nb : 0.0;
        order[e] = e;
    }
    sort_key = mean;
    qsort(order, (size_t)E, sizeof *order, by_load_desc);
    int slots = (E + D - 1) / D + (p == MOE_PLACE_REPLICATE ? 1 : 0);
    for (int g = 0; g < D; g++) gload[g] = 0, gcount[g] = 0;
    for (int oi = 0; oi < E; oi++) {
        int e = order[oi];
        int copies = p == MOE_PLACE_REPLICATE && oi < D && D > 1 ? 2 : 1;
        for (int c = 0; c < copies; c++) {
            int best = -1;
            double best_cost = 0;
            for (int g = 0; g < D; g++) {
                if (gcount[g] >= slots || (c == 1 && pl->group[e * C] == g)) continue;
                double cost = gload[g];
                if (p == MOE_PLACE_ANTICORR) {
                    double corr = 0;
                    int n = 0;
                    for (int o = 0; o < E; o++)
                        for (int oc = 0; oc < C; oc++)
                            if (pl->group[o * C + oc] == g) corr += pearson(sh, nb, E, e, o), n++;
                    cost = D * gload[g] + 0.5 * (n ? corr / n : 0.0);
                }
                if (best < 0 || cost < best_cost) best = g, best_cost = cost;
            }
            pl->group[e * C + c] = best;
            gload[best] += mean[e] / copies;
            gcount[best]++;
        }
    }
}

spine_status moe_place_evaluate(const moe_trace *t, const moe_placement *pl, int nlayers,
                                size_t from, moe_place_report *rep, spine_error *err) {
    memset(rep, 0, sizeof *rep);
    int E = t->experts;
    double sum = 0;
    double *gl = NULL;
    int maxg = 0;
    for (int l = 0; l < nlayers; l++) maxg = SPINE_MAX(maxg, pl[l].groups);
    gl = calloc((size_t)SPINE_MAX(maxg, 1), sizeof *gl);
    if (!gl) return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    for (size_t i = from; i < t->n; i++) {
        const moe_placement *p = NULL;
        for (int l = 0; l < nlayers; l++)
            if (pl[l].layer == t->layer[i]) p = &pl[l];
        if (!p) continue;
        const uint32_t *c = t->counts + i * (size_t)E;
        double tot = 0;
        for (int g = 0; g < p->groups; g++) gl[g] = 0;
        for (int e = 0; e < E; e++) {
            int copies = 0;
            for (int k = 0; k < p->max_copies; k++) copies += p->group[e * p->max_copies + k] >= 0;
            for (int k = 0; k < p->max_copies; k++) {
                int g = p->group[e * p->max_copies + k];
                if (g >= 0) gl[g] += (double)c[e] / copies;
            }
            tot += c[e];
        }
        if (tot <= 0) continue;
        double mx = 0;
        for (int g = 0; g < p->groups; g++) mx = SPINE_MAX(mx, gl[g] / tot);
        rep->max_load = SPINE_MAX(rep->max_load, mx);
        sum += mx;
        rep->batches++;
    }
    free(gl);
    if (rep->batches == 0)
        return spine_fail(err, SPINE_ERR_INVALID, "no batches to evaluate the placement on");
    rep->avg_max_load = sum / (double)rep->batches;
    return SPINE_OK;
}

spine_status moe_place(const moe_trace *t, int groups, moe_place_policy p, size_t fit_end,
                       moe_placement **out, int *nlayers, moe_place_report *rep, spine_error *err) {
    *out = NULL;
    *nlayers = 0;
    int E = t->experts;
    if (groups < 1 || groups > E)
        return spine_fail(err, SPINE_ERR_INVALID, "groups must be 1..%d (the experts)", E);
    if ((unsigned)p >= MOE_PLACE_COUNT)
        return spine_fail(err, SPINE_ERR_INVALID, "unknown placement policy");
    if (fit_end > t->n) fit_end = t->n;
    int layers[MOE_TRACE_MAX_LAYERS];
    int nl = moe_trace_layers(t, layers);
    moe_placement *pl = calloc((size_t)nl, sizeof *pl);
    double *sh = malloc((fit_end + 1) * (size_t)E * sizeof *sh);
    double *mean = malloc((size_t)E * sizeof *mean),
           *gload = malloc((size_t)groups * sizeof *gload);
    int *order = malloc((size_t)E * sizeof *order),
        *gcount = malloc((size_t)groups * sizeof *gcount);
    spine_status st = SPINE_OK;
    if (!pl || !sh || !mean || !gload || !order || !gcount)
        st = spine_fail(err, SPINE_ERR_NOMEM, "out of memory (placement)");
    for (int l = 0; l < nl && !st; l++) {
        pl[l] = (moe_placement){.layer = layers[l],
                                .experts = E,
                                .groups = groups,
                                .max_copies = p == MOE_PLACE_REPLICATE ? 2 : 1};
        pl[l].group = malloc((size_t)E * pl[l].max_copies * sizeof *pl[l].group);
        if (!pl[l].group) {
            st = spine_fail(err, SPINE_ERR_NOMEM, "out of memory (placement)");
            break;
        }
        size_t nb = shares(t, layers[l], 0, fit_end, sh);
        fit_layer(t, groups, p, sh, nb, &pl[l], mean, order, gload, gcount);
    }
    free(sh), free(mean), free(gload), free(order), free(gcount);
    if (!st && rep) st = moe_place_evaluate(t, pl, nl, fit_end, rep, err);
    if (st) {
        moe_placements_free(pl, nl);
        return st;
    }
    *out = pl;
    *nlayers = nl;
    return SPINE_OK;
}

char *moe_placement_to_text(const moe_placement *pl, int n) {
    if (n < 1) return NULL;
    spine_buf b = {0};
    spine_buf_printf(&b, "spine-moe-placement 1 experts=%d groups=%d copies=%d\n", pl[0].experts,
                     pl[0].groups, pl[0].max_copies);
    spine_buf_puts(&b, "# layer L: the group of each expert 0..E-1 (copies joined by '/')\n");
    for (int l = 0; l < n; l++) {
        spine_buf_printf(&b, "layer %d:", pl[l].layer);
        for (int e = 0; e < pl[l].experts; e++) {
            spine_buf_puts(&b, " ");
            for (int c = 0, first = 1; c < pl[l].max_copies; c++) {
                int g = pl[l].group[e * pl[l].max_copies + c];
                if (g < 0) continue;
                spine_buf_printf(&b, first ? "%d" : "/%d", g);
                first = 0;
            }
        }
        spine_buf_puts(&b, "\n");
    }
    if (b.failed) {
        spine_buf_free(&b);
        return NULL;
    }
    return b.data;
}

static bool read_num(const char **p, const char *end, long max, long *out) {
    const char *s = *p;
    if (s >= end || *s < '0' || *s > '9') return false;
    long v = 0;
    while (s < end && *s >= '0' && *s <= '9') {
        v = v * 10 + (*s++ - '0');
        if (v > max) return false;
    }
    *p = s;
    *out = v;
    return true;
}

spine_status moe_placement_parse(const char *text, size_t len, moe_placement **out, int *nout,
                                 spine_error *err) {
    *out = NULL;
    *nout = 0;
    if (len > ((size_t)64 << 20))
        return spine_fail(err, SPINE_ERR_LIMIT, "placement file too large");
    const char *p = text, *end = text + len;
    int line = 0, E = 0, D = 0, C = 0, n = 0;
    moe_placement *pl = NULL;
    spine_status st = SPINE_OK;
    while (p < end && !st) {
        const char *le = memchr(p, '\n', (size_t)(end - p));
        if (!le) le = end;
        const char *q = p, *lend = le > p && le[-1] == '\r' ? le - 1 : le;
        p = le < end ? le + 1 : end;
        line++;
        while (q < lend && (*q == ' ' || *q == '\t')) q++;
        if (q == lend || *q == '#') continue;
        if (!pl) {
            char buf[128], tail;
            size_t l = (size_t)(lend - q);
            if (l >= sizeof buf ||
                (memcpy(buf, q, l), buf[l] = 0,
                 sscanf(buf, "spine-moe-placement 1 experts=%d groups=%d copies=%d %c", &E, &D, &C,
                        &tail) != 3) ||
                E < 1 || E > MOE_TRACE_MAX_EXPERTS || D < 1 || D > E || C < 1 || C > D) {
                st = spine_fail(err, SPINE_ERR_FORMAT,
                                "line %d: expected 'spine-moe-placement 1 experts=E groups=D "
                                "copies=C' (1 <= C <= D <= E <= %d)",
                                line, MOE_TRACE_MAX_EXPERTS);
                break;
            }
            pl = calloc(MOE_TRACE_MAX_LAYERS, sizeof *pl);
            if (!pl) st = spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
            continue;
        }
        long layer;
        if ((size_t)(lend - q) < 6 || memcmp(q, "layer ", 6) != 0 ||
            (q += 6, !read_num(&q, lend, MOE_TRACE_MAX_LAYERS - 1, &layer)) || q >= lend ||
            *q++ != ':') {
            st = spine_fail(err, SPINE_ERR_FORMAT, "line %d: expected 'layer L:' (L < %d)", line,
                            MOE_TRACE_MAX_LAYERS);
            break;
        }
        for (int i = 0; i < n; i++)
            if (pl[i].layer == (int)layer)
                st = spine_fail(err, SPINE_ERR_FORMAT, "line %d: layer %ld placed twice", line,
                                layer);
        if (st) break;
        moe_placement *x = &pl[n];
        *x = (moe_placement){.layer = (int)layer, .experts = E, .groups = D, .max_copies = C};
        x->group = malloc((size_t)E * C * sizeof *x->group);
        if (!x->group) {
            st = spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
            break;
        }
        n++;
        for (int i = 0; i < E * C; i++) x->group[i] = -1;
        for (int e = 0; e < E && !st; e++) {
            while (q < lend && (*q == ' ' || *q == '\t')) q++;
            for (int c = 0; !st; c++) {
                long g;
                if (c >= C || !read_num(&q, lend, D - 1, &g)) {
                    st = spine_fail(err, SPINE_ERR_FORMAT,
                                    "line %d: expert %d: expected up to %d group numbers below %d "
                                    "joined by '/'",
                                    line, e, C, D);
                    break;
                }
                for (int k = 0; k < c; k++)
                    if (x->group[e * C + k] == (int)g)
                        st = spine_fail(err, SPINE_ERR_FORMAT,
                                        "line %d: expert %d placed twice on group %ld", line, e, g);
                x->group[e * C + c] = (int)g;
                if (q < lend && *q == '/') {
                    q++;
                    continue;
                }
                break;
            }
        }
        while (!st && q < lend && (*q == ' ' || *q == '\t')) q++;
        if (!st && q != lend)
            st = spine_fail(err, SPINE_ERR_FORMAT, "line %d: more than %d experts", line, E);
    }
    if (!st && !pl) st = spine_fail(err, SPINE_ERR_FORMAT, "empty placement file (no header)");
    if (!st && n == 0) st = spine_fail(err, SPINE_ERR_FORMAT, "placement file has no layers");
    if (st) {
        moe_placements_free(pl, n);
        return st;
    }
    *out = pl;
    *nout = n;
    return SPINE_OK;
}
