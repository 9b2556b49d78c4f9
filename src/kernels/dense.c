/* dense.c: the dense side of a DLRM: linear layers through BLAS (single-threaded; spine's pool
 * owns parallelism), bias + activation, the pairwise-dot interaction, sigmoid. */
#include "kernels.h"

#include <cblas.h>
#include <math.h>

/* OpenBLAS's knob, when the BLAS in use is OpenBLAS. */
extern void openblas_set_num_threads(int n) __attribute__((weak));

void dense_init(void) {
    if (openblas_set_num_threads) openblas_set_num_threads(1);
}

void dense_linear(int m, int n, int k, const float *x, int ldx, const float *w, const float *bias,
                  float *y, int ldy, act_kind act) {
    if (m <= 0 || n <= 0) return;
    if (m == 1) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, n, k, 1.0f, w, k, x, 1, 0.0f, y, 1);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, x, ldx, w, k, 0.0f, y,
                    ldy);
    }
    for (int i = 0; i < m; i++) {
        float *r = y + (size_t)i * ldy;
        if (act == ACT_RELU) {
            for (int j = 0; j < n; j++) {
                float v = r[j] + bias[j];
                r[j] = v > 0.0f ? v : 0.0f;
            }
        } else {
            for (int j = 0; j < n; j++) r[j] += bias[j];
        }
    }
}

void dense_dot_avx2(const float *feat, int nf, int d, bool self, float *out);

void dense_dot_interact(const float *feat, int nf, int d, bool self, float *out) {
#if defined(__x86_64__) && defined(SPINE_HAVE_AVX2)
    static int have = -1; /* a CPU property, computed once; races write the same value */
    if (have < 0) have = sls_best_isa() >= SLS_ISA_AVX2;
    if (have) {
        dense_dot_avx2(feat, nf, d, self, out);
        return;
    }
#endif
    size_t o = 0;
    for (int i = 0; i < nf; i++) {
        const float *a = feat + (size_t)i * d;
        for (int j = 0; j < (self ? i + 1 : i); j++) {
            const float *b = feat + (size_t)j * d;
            float s = 0.0f;
            for (int k = 0; k < d; k++) s = fmaf(a[k], b[k], s);
            out[o++] = s;
        }
    }
}

float dense_sigmoid(float x) {
    return 1.0f / (1.0f + expf(-x));
}
