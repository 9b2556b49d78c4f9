/* fuzz_moe_config.c: arbitrary bytes as a MoE config.json; an accepted config must write and
 * re-read to the same shape. */
#include "moe/moe.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    moe_config c;
    if (moe_config_parse((const char *)data, size, &c, NULL) != SPINE_OK) return 0;
    char *json = moe_config_to_json(&c);
    if (json) {
        moe_config d;
        if (moe_config_parse(json, strlen(json), &d, NULL) != SPINE_OK) __builtin_trap();
        if (d.hidden != c.hidden || d.layers != c.layers || d.experts != c.experts ||
            d.head_dim != c.head_dim || d.kv_heads != c.kv_heads || d.moe_every != c.moe_every ||
            d.top_k != c.top_k || d.vocab != c.vocab)
            __builtin_trap();
        free(json);
    }
    return 0;
}
