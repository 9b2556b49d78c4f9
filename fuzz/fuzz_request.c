/* fuzz_request.c: arbitrary bytes as an Open Inference Protocol infer body for the tiny model,
 * both as plain JSON and as the binary extension (the first two bytes choose the JSON length).
 * A request that decodes must be safe to run: every index inside its table. An admit callback
 * refuses every third batch size, so the early stop (a server's overload refusal) is fuzzed
 * too: a refused request carries no tensors and frees cleanly. */
#include "model/dlrm.h"
#include "serve/protocol.h"

#include <stdlib.h>

static spine_model *model;
static spine_ctx *ctx;

static bool admit(void *arg, int32_t batch) {
    (void)arg;
    if (batch < 1) __builtin_trap(); /* asked only once the shapes are valid */
    return batch % 3 != 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!model) {
        dlrm_gen_opts o = {.preset = "tiny", .rows_scale = 1, .seed = 1};
        if (dlrm_gen_model(&o, &model, NULL) || spine_ctx_create(model, 64, NULL, &ctx, NULL))
            __builtin_trap();
    }
    for (int mode = 0; mode < 2; mode++) {
        size_t json_len = 0;
        const char *body = (const char *)data;
        size_t len = size;
        if (mode == 1) {
            if (size < 2) break;
            json_len = ((size_t)data[0] | (size_t)data[1] << 8) % (size - 1) + 1;
            body += 2;
            len -= 2;
            if (json_len > len) json_len = len;
        }
        infer_request r;
        spine_error e;
        if (proto_decode_infer(model, body, len, json_len, admit, NULL, &r, &e) != SPINE_OK)
            continue;
        if (r.refused) {
            if (r.batch % 3 != 0 || r.values || r.lengths || r.dense) __builtin_trap();
            infer_request_free(&r);
            continue;
        }
        float *out = malloc((size_t)r.batch * sizeof *out);
        spine_batch b = {r.batch, r.dense, r.lengths, r.values, r.weights};
        if (out && spine_ctx_run(ctx, &b, out, 0, &e) != SPINE_OK) __builtin_trap();
        spine_buf resp = {0};
        size_t jl;
        if (out) proto_encode_infer("tiny", &r, out, &resp, &jl);
        spine_buf_free(&resp);
        free(out);
        infer_request_free(&r);
    }
    return 0;
}
