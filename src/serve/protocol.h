/* protocol.h: the Open Inference Protocol (KServe v2) for DLRM models: decoding an infer
 * request (JSON tensors, or the binary tensor extension: a JSON header of
 * Inference-Header-Content-Length bytes followed by raw tensor bytes) into a validated batch,
 * and encoding the response. Inputs: "dense" FP32 [B, n_dense]; "lengths" INT32 [T, B]
 * (table-major, KeyedJaggedTensor layout); "values" INT64 or INT32 [sum of lengths]; optional
 * "weights" FP32 [sum of lengths]. Output: "probabilities" FP32 [B, 1].
 * Nothing from the wire is trusted: shapes, dtypes, counts, sums and every index are checked
 * here, so that a request that decodes can never fail (or fail others) inside a batch. */
#ifndef SPINE_PROTOCOL_H
#define SPINE_PROTOCOL_H

#include "../base/base.h"

#define PROTO_MAX_BATCH (1 << 20)
#define PROTO_MAX_JSON_NODES (4u << 20) /* 160 MB of parse tree at most per request */

typedef struct infer_request {
    char id[128];
    int32_t batch;
    int64_t nvalues;
    float *dense;
    int32_t *lengths;
    int64_t *values;
    float *weights; /* NULL when absent */
    bool binary_output;
    bool refused; /* the admit callback said no: batch is set, no tensors were decoded */
} infer_request;

/* Asked once the batch size is known and the shapes check out, before the indices are widened
 * and range-checked (the bulk of a decode): whether the request can still be served. A server
 * under overload refuses here instead of after paying for the whole decode. */
typedef bool (*proto_admit_fn)(void *arg, int32_t batch);

/* body: the request body; json_len: the Inference-Header-Content-Length value, or 0 when the
 * whole body is JSON. Failures are SPINE_ERR_INVALID/FORMAT/RANGE/LIMIT with a message fit
 * for the client. admit (optional): when it returns false the decode stops there and returns
 * SPINE_OK with out->refused set (nothing to free but what infer_request_free frees). */
spine_status proto_decode_infer(const spine_model *m, const char *body, size_t len, size_t json_len,
                                proto_admit_fn admit, void *admit_arg, infer_request *out,
                                spine_error *err);
void infer_request_free(infer_request *r);

/* The response for a decoded request and its B outputs. With binary output, *json_len is the
 * length of the JSON header that precedes the raw FP32 bytes (0 otherwise). */
spine_status proto_encode_infer(const char *model_name, const infer_request *r, const float *out,
                                spine_buf *body, size_t *json_len);

/* {"error": msg} */
void proto_error_json(spine_buf *b, const char *msg);

#endif
