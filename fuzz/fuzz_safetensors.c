/* fuzz_safetensors.c: arbitrary bytes as a safetensors file; when it parses, every tensor's
 * bytes are read and a DLRM is bound to it (the tensor-checking path of model loading). */
#include "base/safetensors.h"
#include "model/dlrm.h"

static const char *cfg = "{\"model_type\":\"dlrm\",\"num_dense_features\":2,\"embedding_dim\":2,"
                         "\"bottom_mlp\":[2],\"top_mlp\":[1],\"tables\":[{\"rows\":3},"
                         "{\"rows\":2,\"dtype\":\"int4\"}]}";

volatile uint8_t fuzz_sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    spine_tensors ts;
    if (st_parse(data, size, false, &ts, NULL) != SPINE_OK) return 0;
    uint8_t sum = 0;
    for (size_t i = 0; i < ts.n; i++) {
        const uint8_t *p = ts.t[i].data;
        for (size_t k = 0; k < ts.t[i].nbytes; k++) sum ^= p[k];
        fuzz_sink = sum;
    }
    dlrm_config c;
    if (dlrm_config_parse(cfg, strlen(cfg), &c, NULL) != SPINE_OK) __builtin_trap();
    spine_model *m;
    if (dlrm_model_create(&c, &ts, SPINE_PLACE_MAP, &m, NULL) == SPINE_OK) spine_model_free(m);
    return 0;
}
