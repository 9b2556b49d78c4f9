/* protocol_moe.h: the Open Inference Protocol for MoE language models: an infer request holds
 * "input_ids" INT64 or INT32 [B, T] (JSON tensors; every sequence of a request the same length)
 * and optional parameters {"max_tokens": N} (greedy decode steps, 0..PROTO_MOE_MAX_NEW); the
 * response holds "logits" FP32 [B, vocab] for the last position when N is 0, else
 * "generated_ids" INT64 [B, N]. Ids are checked against the vocabulary here. */
#ifndef SPINE_PROTOCOL_MOE_H
#define SPINE_PROTOCOL_MOE_H

#include "../base/base.h"

#define PROTO_MOE_MAX_NEW 256

typedef struct moe_infer_request {
    char id[128];
    int batch, len, max_tokens;
    int64_t *ids; /* [batch * len] */
} moe_infer_request;

spine_status proto_decode_moe(const char *body, size_t len, int vocab, int max_batch, int max_len,
                              moe_infer_request *out, spine_error *err);
void moe_infer_request_free(moe_infer_request *r);
/* logits [B, vocab] when r->max_tokens is 0, else gen [B, max_tokens] */
spine_status proto_encode_moe(const char *model_name, const moe_infer_request *r, int vocab,
                              const float *logits, const int64_t *gen, spine_buf *body);

#endif
