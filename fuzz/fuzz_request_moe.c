/* fuzz_request_moe.c: arbitrary bytes as an MoE infer request; an accepted request holds
 * batch x len ids inside the vocabulary and encodes back. */
#include "serve/protocol_moe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    moe_infer_request r;
    if (proto_decode_moe((const char *)data, size, 1000, 8, 64, &r, NULL) != SPINE_OK) return 0;
    if (r.batch < 1 || r.batch > 8 || r.len < 1 || r.len + r.max_tokens > 64) __builtin_trap();
    for (int i = 0; i < r.batch * r.len; i++)
        if (r.ids[i] < 0 || r.ids[i] >= 1000) __builtin_trap();
    float logits[8 * 1000] = {0};
    int64_t gen[8 * 64] = {0};
    spine_buf b = {0};
    proto_encode_moe("m", &r, 1000, logits, gen, &b);
    spine_buf_free(&b);
    moe_infer_request_free(&r);
    return 0;
}
