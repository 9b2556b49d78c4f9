/* moe_cache.c: expert-cache simulation on a routing trace. Each MoE layer has its own `slots`
 * resident experts; a batch requests its active experts in increasing id order (the order
 * experts run in); a miss loads the expert, evicting one chosen by the policy when the slots
 * are full. Belady's MIN (evict the resident needed furthest in the future) is the offline
 * lower bound on misses for this request sequence; tests check that no policy beats it. */
#include "moe_trace.h"

#include <stdlib.h>

static const char *const policy_names[MOE_POLICY_COUNT] = {"lifo", "fifo", "lru", "lfu", "belady"};

const char *moe_policy_name(moe_policy p) {
    return (unsigned)p < MOE_POLICY_COUNT ? policy_names[p] : "?";
}

int moe_policy_parse(const char *s, moe_policy *out) {
    for (int i = 0; i < MOE_POLICY_COUNT; i++)
        if (strcmp(s, policy_names[i]) == 0) {
            *out = (moe_policy)i;
            return 0;
        }
    return -1;
}

#define NEVER INT64_MAX

int moe_policy_victim(moe_policy p, int E, const bool *cand, const int64_t *loaded_at,
                      const int64_t *last_used, const int64_t *uses, const int64_t *next_use,
                      const uint8_t *active) {
    int best = -1;
    for (int e = 0; e < E; e++) {
        if (!cand[e]) continue;
        if (best < 0) {
            best = e;
            continue;
        }
        bool better = false;
        switch (p) {
        case MOE_POLICY_LIFO: {
            bool ie = !active[e], ib = !active[best]; /* inactive in this batch first */
            better = ie != ib ? ie : loaded_at[e] > loaded_at[best];
            break;
        }
        case MOE_POLICY_FIFO:
            better = loaded_at[e] < loaded_at[best];
            break;
        case MOE_POLICY_LRU:
            better = last_used[e] < last_used[best];
            break;
        case MOE_POLICY_LFU:
            better = uses[e] != uses[best] ? uses[e] < uses[best] : last_used[e] < last_used[best];
            break;
        default:
            better = next_use[e] > next_use[best];
            break;
        }
        if (better) best = e;
    }
    return best;
}

spine_status moe_cache_simulate(const moe_trace *t, int slots, moe_policy p, moe_cache_stats *out,
                                spine_error *err) {
    memset(out, 0, sizeof *out);
    if (slots < 1) return spine_fail(err, SPINE_ERR_INVALID, "slots must be at least 1");
    if ((unsigned)p >= MOE_POLICY_COUNT)
        return spine_fail(err, SPINE_ERR_INVALID, "unknown eviction policy");
    int E = t->experts, layers[MOE_TRACE_MAX_LAYERS];
    int nl = moe_trace_layers(t, layers);
    /* requests of one layer: expert ids and the record they come from; next use of each */
    size_t maxreq = t->n * (size_t)E;
    int *req = malloc(maxreq * sizeof *req);
    size_t *rec = malloc(maxreq * sizeof *rec);
    int64_t *next = malloc(maxreq * sizeof *next);
    bool *resident = calloc((size_t)E, sizeof *resident);
    uint8_t *active = calloc((size_t)E, 1);
    int64_t *state = calloc((size_t)E * 5, sizeof *state);
    if (!req || !rec || !next || !resident || !active || !state) {
        free(req), free(rec), free(next), free(resident), free(active), free(state);
        return spine_fail(err, SPINE_ERR_NOMEM, "out of memory (cache simulation)");
    }
    int64_t *loaded_at = state, *last_used = state + E, *uses = state + 2 * E;
    int64_t *next_use_of = state + 3 * E, *last_seen = state + 4 * E;
    for (int li = 0; li < nl; li++) {
        size_t nr = 0;
        for (size_t i = 0; i < t->n; i++) {
            if (t->layer[i] != layers[li]) continue;
            const uint32_t *c = t->counts + i * (size_t)E;
            for (int e = 0; e < E; e++)
                if (c[e]) req[nr] = e, rec[nr] = i, nr++;
        }
        for (int e = 0; e < E; e++) last_seen[e] = NEVER;
        for (size_t i = nr; i-- > 0;) {
            next[i] = last_seen[req[i]];
            last_seen[req[i]] = (int64_t)i;
        }
        memset(resident, 0, (size_t)E * sizeof *resident);
        memset(state, 0, (size_t)E * 4 * sizeof *state);
        int resident_n = 0;
        int64_t seq = 0;
        for (size_t i = 0; i < nr; i++) {
            int e = req[i];
            out->requests++;
            if (resident[e]) {
                out->hits++;
            } else {
                out->misses++;
                if (resident_n == slots) {
                    const uint32_t *c = t->counts + rec[i] * (size_t)E;
                    for (int x = 0; x < E; x++) active[x] = c[x] != 0;
                    int v = moe_policy_victim(p, E, resident, loaded_at, last_used, uses,
                                              next_use_of, active);
                    resident[v] = false;
                    resident_n--;
                }
                resident[e] = true;
                resident_n++;
                loaded_at[e] = ++seq;
            }
            last_used[e] = (int64_t)i;
            uses[e]++;
            next_use_of[e] = next[i];
        }
    }
    free(req), free(rec), free(next), free(resident), free(active), free(state);
    return SPINE_OK;
}
