/* fuzz_trace.c: arbitrary bytes as a routing trace and as a placement file; an accepted trace
 * must write and re-read to the same records, and replay and placement must run on it; an
 * accepted placement must write and re-read to the same groups. */
#include "moe/moe_trace.h"

#include <stdlib.h>

static void placement(const uint8_t *data, size_t size) {
    moe_placement *pl = NULL;
    int n = 0;
    if (moe_placement_parse((const char *)data, size, &pl, &n, NULL) != SPINE_OK) return;
    char *text = moe_placement_to_text(pl, n);
    if (text) {
        moe_placement *q = NULL;
        int m = 0;
        if (moe_placement_parse(text, strlen(text), &q, &m, NULL) != SPINE_OK || m != n)
            __builtin_trap();
        for (int i = 0; i < n; i++)
            if (memcmp(q[i].group, pl[i].group,
                       (size_t)pl[i].experts * pl[i].max_copies * sizeof *pl[i].group) != 0)
                __builtin_trap();
        moe_placements_free(q, m);
        free(text);
    }
    moe_placements_free(pl, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    placement(data, size);
    moe_trace t;
    if (moe_trace_parse((const char *)data, size, &t, NULL) != SPINE_OK) return 0;
    char *text = moe_trace_to_text(&t);
    if (text) {
        moe_trace u;
        if (moe_trace_parse(text, strlen(text), &u, NULL) != SPINE_OK) __builtin_trap();
        if (u.n != t.n || u.experts != t.experts ||
            memcmp(u.counts, t.counts, t.n * (size_t)t.experts * sizeof *t.counts) != 0)
            __builtin_trap();
        moe_trace_free(&u);
        free(text);
    }
    if (t.experts <= 64 && t.n <= 64) {
        moe_cache_stats s, b;
        if (moe_cache_simulate(&t, 2, MOE_POLICY_LIFO, &s, NULL) == SPINE_OK &&
            moe_cache_simulate(&t, 2, MOE_POLICY_BELADY, &b, NULL) == SPINE_OK &&
            s.misses < b.misses)
            __builtin_trap();
        moe_placement *pl;
        int nl;
        moe_place_report r;
        if (moe_place(&t, 1 + (int)(size % (size_t)t.experts), MOE_PLACE_ANTICORR, t.n / 2, &pl,
                      &nl, &r, NULL) == SPINE_OK)
            moe_placements_free(pl, nl);
    }
    moe_trace_free(&t);
    return 0;
}
