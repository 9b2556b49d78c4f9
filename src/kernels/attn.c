/* attn.c: one query row's attention over a key/value cache: the portable path (a dot product
 * per key, expf, an axpy per value: the reference's order) and the choice of the AVX-512 one
 * (attn_avx512.c) where the CPU and the head dim allow it. */
#include "attn.h"

#include "kernels.h"
#include "matmul.h"

#include <math.h>

void attn_row_portable(const float *q, const float *K, const float *V, size_t ld, int nk, int hd,
                       float scale, float *sc, float *o) {
    float mx = -INFINITY;
    for (int j = 0; j < nk; j++) {
        sc[j] = mm_dot(q, K + (size_t)j * ld, hd) * scale;
        mx = sc[j] > mx ? sc[j] : mx;
    }
    float sum = 0.0f;
    for (int j = 0; j < nk; j++) {
        sc[j] = expf(sc[j] - mx);
        sum += sc[j];
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < hd; i++) o[i] = 0.0f;
    for (int j = 0; j < nk; j++) mm_axpy(o, sc[j] * inv, V + (size_t)j * ld, hd);
}

void attn_row(const float *q, const float *K, const float *V, size_t ld, int nk, int hd,
              float scale, float *sc, float *o) {
#if defined(__x86_64__) && defined(SPINE_HAVE_AVX2)
    if (mm_isa() >= SLS_ISA_AVX512 && attn_avx512_fits(hd)) {
        attn_row_avx512(q, K, V, ld, nk, hd, scale, sc, o);
        return;
    }
#endif
    attn_row_portable(q, K, V, ld, nk, hd, scale, sc, o);
}
