/* batchfile.c: model inputs stored as a safetensors file (the KeyedJaggedTensor layout). */
#include "io.h"

#include <stdlib.h>

void batch_file_free(batch_file *bf) {
    st_free(&bf->ts);
    free(bf->values64);
    memset(bf, 0, sizeof *bf);
}

spine_status batch_file_open(const char *path, int num_dense, int num_tables, batch_file *bf,
                             spine_error *err) {
    memset(bf, 0, sizeof *bf);
    spine_status st = st_open(path, &bf->ts, err);
    if (st) return st;
    const spine_tensor *dense = st_find(&bf->ts, "dense"), *lengths = st_find(&bf->ts, "lengths"),
                       *values = st_find(&bf->ts, "values"), *weights = st_find(&bf->ts, "weights");
    if (!dense || dense->dtype != SPINE_DT_F32 || dense->ndim != 2 ||
        dense->shape[1] != num_dense || dense->shape[0] > INT32_MAX) {
        st = spine_fail(err, SPINE_ERR_FORMAT, "%s: needs \"dense\" F32 [B, %d]", path, num_dense);
        goto fail;
    }
    int64_t B = dense->shape[0];
    if (!lengths || lengths->dtype != SPINE_DT_I32 || lengths->ndim != 2 ||
        lengths->shape[0] != num_tables || lengths->shape[1] != B) {
        st = spine_fail(err, SPINE_ERR_FORMAT, "%s: needs \"lengths\" I32 [%d, %lld]", path,
                        num_tables, (long long)B);
        goto fail;
    }
    if (!values || values->ndim != 1 ||
        (values->dtype != SPINE_DT_I64 && values->dtype != SPINE_DT_I32)) {
        st = spine_fail(err, SPINE_ERR_FORMAT, "%s: needs \"values\" I64 or I32 [N]", path);
        goto fail;
    }
    int64_t N = values->shape[0];
    if (weights &&
        (weights->dtype != SPINE_DT_F32 || weights->ndim != 1 || weights->shape[0] != N)) {
        st = spine_fail(err, SPINE_ERR_FORMAT, "%s: \"weights\" must be F32 [%lld]", path,
                        (long long)N);
        goto fail;
    }
    const int64_t *v64 = values->data;
    if (values->dtype == SPINE_DT_I32) {
        bf->values64 = malloc((size_t)(N ? N : 1) * sizeof *bf->values64);
        if (!bf->values64) {
            st = spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
            goto fail;
        }
        const int32_t *v32 = values->data;
        for (int64_t i = 0; i < N; i++) bf->values64[i] = v32[i];
        v64 = bf->values64;
    }
    bf->batch =
        (spine_batch){(int32_t)B, dense->data, lengths->data, v64, weights ? weights->data : NULL};
    bf->nvalues = N;
    return SPINE_OK;
fail:
    batch_file_free(bf);
    return st;
}
