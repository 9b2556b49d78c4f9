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

spine_status dlrm_inputs_random(const spine_model_desc *d, int32_t batch, int lookups,
                                bool weighted, spine_rng *rng, dlrm_inputs *in, spine_error *err) {
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
    for (size_t t = 0; t < T; t++) {
        for (size_t i = 0; i < B; i++) {
            in->lengths[t * B + i] = (int32_t)L;
            for (size_t j = 0; j < L; j++) {
                in->values[k] = (int64_t)spine_rng_below(rng, (uint64_t)d->tables[t].rows);
                if (weighted) in->weights[k] = spine_rng_uniform(rng);
                k++;
            }
        }
    }
    in->nvalues = (int64_t)nv;
    in->batch = (spine_batch){batch, in->dense, in->lengths, in->values, in->weights};
    return SPINE_OK;
}
