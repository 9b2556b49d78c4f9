/* fuzz_config.c: arbitrary bytes as config.json; an accepted config must write and re-read
 * to the same shape. */
#include "model/dlrm.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dlrm_config c;
    if (dlrm_config_parse((const char *)data, size, &c, NULL) != SPINE_OK) return 0;
    char *json = dlrm_config_to_json(&c);
    if (json) {
        dlrm_config c2;
        if (dlrm_config_parse(json, strlen(json), &c2, NULL) != SPINE_OK) __builtin_trap();
        if (c2.interaction_dim != c.interaction_dim || c2.num_tables != c.num_tables ||
            c2.emb_bytes != c.emb_bytes)
            __builtin_trap();
        dlrm_config_free(&c2);
        free(json);
    }
    dlrm_config_free(&c);
    return 0;
}
