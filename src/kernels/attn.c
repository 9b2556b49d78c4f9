/* attn.c: attention of query rows over a key/value cache: the portable path (a row at a time:
 * scores over the transposed keys, expf, an axpy per value) and the choice of the AVX-512 one
 * (attn_avx512.c) where the CPU and the head dim allow it. */
#include "attn.h"

#include "kernels.h"
#include "matmul.h"

#include <math.h>

static void row_portable(const float *q, const float *Kt, size_t ldk, const float *V, size_t ldv,
                         int nk, int hd, float scale, float *sc, float *o) {
    /* scores key-parallel: each key's sum over d in order (the compiler vectorizes over keys) */
    for (int j = 0; j < nk; j++) sc[j] = 0.0f;
    for (int d = 0; d < hd; d++) {
        const float qd = q[d], *kd = Kt + (size_t)d * ldk;
        for (int j = 0; j < nk; j++) sc[j] += qd * kd[j];
    }
    float mx = -INFINITY;
    for (int j = 0; j < nk; j++) {
        sc[j] *= scale;
        mx = sc[j] > mx ? sc[j] : mx;
    }
    float sum = 0.0f;
    for (int j = 0; j < nk; j++) {
        sc[j] = expf(sc[j] - mx);
        sum += sc[j];
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < hd; i++) o[i] = 0.0f;
    for (int j = 0; j < nk; j++) mm_axpy(o, sc[j] * inv, V + (size_t)j * ldv, hd);
}

void attn_rows_portable(const float *q, size_t ldq, int n, const float *Kt, size_t ldk,
                        const float *V, size_t ldv, int nk, int hd, float scale, float *sc,
                        float *o, size_t ldo) {
    for (int i = 0; i < n; i++)
        row_portable(q + (size_t)i * ldq, Kt, ldk, V, ldv, nk, hd, scale, sc, o + (size_t)i * ldo);
}

void attn_rows(const float *q, size_t ldq, int n, const float *Kt, size_t ldk, const float *V,
               size_t ldv, int nk, int hd, float scale, float *sc, float *o, size_t ldo) {
#if defined(__x86_64__) && defined(SPINE_HAVE_AVX2)
    if (mm_isa() >= SLS_ISA_AVX512 && attn_avx512_fits(hd)) {
        attn_rows_avx512(q, ldq, n, Kt, ldk, V, ldv, nk, hd, scale, sc, o, ldo);
        return;
    }
#endif
    attn_rows_portable(q, ldq, n, Kt, ldk, V, ldv, nk, hd, scale, sc, o, ldo);
}
