/* inputs.c: random DLRM input batches (KeyedJaggedTensor layout) for benchmarks and demos. */
#include "dlrm.h"

#include <stdlib.h>

void dlrm_inputs_free(dlrm_inputs *in) {
    free(in->dense);
    free(in->lengths);
    free(in->values);
    free(in->weights);
    memset(in, 0, sizeof *in);
}

static uint64_t gcd64(uint64_t a, uint64_t b) {
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

void dlrm_perm_init(const dlrm_index_dist *dist, int t, int64_t rows, dlrm_perm *p) {
    uint64_t n = rows > 0 ? (uint64_t)rows : 1,
             h = spine_hash64(dist->seed * 1000003u + (uint64_t)t);
    uint64_t a = (h | 1) % n, b = spine_hash64(h) % n;
    while (n > 1 && gcd64(a, n) != 1) a = (a + 1) % n; /* an affine map mod n: a bijection */
    *p = (dlrm_perm){n > 1 ? a : 0, n > 1 ? b : 0, n};
}

spine_status dlrm_inputs_random(const spine_model_desc *d, int32_t batch, int lookups,
                                bool weighted, const dlrm_index_dist *dist, spine_rng *rng,
                                dlrm_inputs *in, spine_error *err) {
    memset(in, 0, sizeof *in);
    if (batch < 0 || lookups < 0) return spine_fail(err, SPINE_ERR_INVALID, "bad batch or lookups");
    size_t B = (size_t)batch, T = (size_t)d->num_tables, L = (size_t)lookups;
    size_t nv = B * T * L;
    in->dense = malloc((B * (size_t)d->num_dense + 1) * sizeof *in->dense);
    in->lengths = malloc((B * T + 1) * sizeof *in->lengths);
    in->values = malloc((nv + 1) * sizeof *in->values);
    if (weighted) in->weights = malloc((nv + 1) * sizeof *in->weights);
    if (!in->dense || !in->lengths || !in->values || (weighted && !in->weights)) {
        dlrm_inputs_free(in);
        return spine_fail(err, SPINE_ERR_NOMEM, "cannot allocate a batch of %d", batch);
    }
    for (size_t i = 0; i < B * (size_t)d->num_dense; i++) in->dense[i] = spine_rng_uniform(rng);
    size_t k = 0;
    /* rejected Zipf draws allowed in all (a rank range must hold at least ~1/64 of the mass) */
    uint64_t rejects = 0, reject_cap = 64 * (uint64_t)nv + (1u << 16);
    for (size_t t = 0; t < T; t++) {
        uint64_t rows = (uint64_t)d->tables[t].rows;
        spine_zipf z;
        dlrm_perm perm;
        bool skew = dist && dist->alpha > 0;
        uint64_t lo = 0, hi = rows;
        if (skew) {
            spine_zipf_init(&z, rows, dist->alpha);
            dlrm_perm_init(dist, (int)t, (int64_t)rows, &perm);
            lo = dist->rank_lo;
            hi = dist->rank_hi ? SPINE_MIN(dist->rank_hi, rows) : rows;
            if (lo >= hi) {
                dlrm_inputs_free(in);
                return spine_fail(err, SPINE_ERR_INVALID,
                                  "table %zu: Zipf ranks [%llu, %llu) hold none of its %llu rows",
                                  t, (unsigned long long)dist->rank_lo,
                                  (unsigned long long)dist->rank_hi, (unsigned long long)rows);
            }
        }
        for (size_t i = 0; i < B; i++) {
            in->lengths[t * B + i] = (int32_t)L;
            for (size_t j = 0; j < L; j++) {
                if (skew) {
                    uint64_t r = spine_zipf_draw(&z, rng);
                    while ((r < lo || r >= hi) && rejects < reject_cap) {
                        r = spine_zipf_draw(&z, rng);
                        rejects++;
                    }
                    if (r < lo || r >= hi) { /* under 1/64 of the mass: too slow to draw */
                        dlrm_inputs_free(in);
                        return spine_fail(err, SPINE_ERR_INVALID,
                                          "table %zu: Zipf(%g) ranks [%llu, %llu) are drawn "
                                          "too rarely to sample",
                                          t, dist->alpha, (unsigned long long)lo,
                                          (unsigned long long)hi);
                    }
                    in->values[k] = dlrm_perm_row(&perm, r);
                } else {
                    in->values[k] = (int64_t)spine_rng_below(rng, rows);
                }
                if (weighted) in->weights[k] = spine_rng_uniform(rng);
                k++;
            }
        }
    }
    in->nvalues = (int64_t)nv;
    in->batch = (spine_batch){batch, in->dense, in->lengths, in->values, in->weights};
    return SPINE_OK;
}
