/* fuzz_json.c: arbitrary bytes as JSON; an accepted document is walked node by node. */
#include "base/json.h"

static size_t walk(const json_doc *d, const json_node *n, int depth) {
    if (depth > JSON_MAX_DEPTH + 1) __builtin_trap();
    size_t k = 1;
    uint32_t count = 0;
    for (const json_node *c = json_child(d, n); c; c = json_next(d, c)) {
        k += walk(d, c, depth + 1);
        count++;
        if (n->type == JSON_OBJECT) { /* key then value */
            c = json_next(d, c);
            k += walk(d, c, depth + 1);
        }
    }
    if ((n->type == JSON_ARRAY || n->type == JSON_OBJECT) && count != n->count) __builtin_trap();
    if (n->type == JSON_STRING && strlen(json_str(d, n)) != n->len) __builtin_trap();
    if (n->type == JSON_NUMBER) {
        int64_t i;
        uint64_t u;
        (void)json_get_i64(d, n, &i);
        (void)json_get_u64(d, n, &u);
    }
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_doc d;
    if (json_parse(&d, (const char *)data, size, NULL) != SPINE_OK) return 0;
    if (walk(&d, json_root(&d), 0) != d.n) __builtin_trap();
    json_free(&d);
    return 0;
}
