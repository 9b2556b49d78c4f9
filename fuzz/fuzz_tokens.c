/* fuzz_tokens.c: arbitrary bytes as a token file; an accepted file holds n_seq x len ids. */
#include "moe/moe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    moe_tokens t;
    if (moe_tokens_parse((const char *)data, size, size % 2 ? 3 : 0, &t, NULL) != SPINE_OK)
        return 0;
    if (t.n_seq < 1 || t.len < 1 || !t.ids) __builtin_trap();
    uint64_t s = 0;
    for (size_t i = 0; i < (size_t)t.n_seq * (size_t)t.len; i++) s += (uint64_t)t.ids[i];
    if (s == 1 && t.n_seq > 1 << 21) __builtin_trap(); /* read every id (ASan checks bounds) */
    moe_tokens_free(&t);
    return 0;
}
