/* fuzz_profile.c: arbitrary bytes as a profile file for a small DLRM (3 tables of 5, 7 and 1
 * rows); an accepted profile fills every count. */
#include "model/dlrm.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const spine_table_desc tables[3] = {{"a", 5, SPINE_ROW_F32, SPINE_POOL_SUM},
                                               {"b", 7, SPINE_ROW_INT8, SPINE_POOL_SUM},
                                               {"c", 1, SPINE_ROW_F16, SPINE_POOL_MEAN}};
    spine_model_desc d = {.num_dense = 1, .emb_dim = 4, .num_tables = 3, .tables = tables};
    spine_tensors ts;
    if (st_parse(data, size, true, &ts, NULL) != SPINE_OK) return 0;
    uint32_t c0[5], c1[7], c2[1], *counts[3] = {c0, c1, c2};
    if (dlrm_profile_from_tensors(&ts, &d, counts, NULL) == SPINE_OK) {
        double b[2] = {0.001, 1}, h[2];
        if (dlrm_profile_coverage(&d, counts, b, 2, h, NULL) == SPINE_OK && (h[0] > h[1] + 1e-12))
            __builtin_trap(); /* a larger budget never serves less */
    }
    st_free(&ts);
    return 0;
}
