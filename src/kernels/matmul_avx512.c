/* matmul_avx512.c: the register-tiled weight product (prefill, and every m beyond the small-m
 * decode kernels) with AVX-512: 16-lane accumulators over k, 4 input rows x TILE_R weight rows
 * per tile, k tails in one masked step (masked loads read zeros past the end, so nothing is
 * added). F32 and BF16 weights (BF16 widened exactly: the 16-bit pattern shifted into the high
 * half). Compiled with -mavx512f -mavx512bw -mavx512vl; entered only after a CPU check. */
#include "matmul.h"

#include <immintrin.h>

#ifndef TILE_R
#define TILE_R 4
#endif

static inline __m512 load_w16(const void *w, size_t i, int bf16, __mmask16 m) {
    if (bf16)
        return _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, (const uint16_t *)w + i)), 16));
    return _mm512_maskz_loadu_ps(m, (const float *)w + i);
}

/* acc[i][j] = x_i . W_{r+j} for M input rows and R weight rows (compile-time constants). */
static inline __attribute__((always_inline)) void tile(const float *x, int ldx, const void *w,
                                                       int bf16, int k, int r, float *y, int ldy,
                                                       const int M, const int R) {
    __m512 acc[4][TILE_R];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < R; j++) acc[i][j] = _mm512_setzero_ps();
    for (int c = 0; c < k; c += 16) {
        const __mmask16 m = k - c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (k - c)) - 1);
        __m512 wv[TILE_R];
        for (int j = 0; j < R; j++) wv[j] = load_w16(w, (size_t)(r + j) * k + c, bf16, m);
        for (int i = 0; i < M; i++) {
            const __m512 xv = _mm512_maskz_loadu_ps(m, x + (size_t)i * ldx + c);
            for (int j = 0; j < R; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < M; i++)
        for (int j = 0; j < R; j++) y[(size_t)i * ldy + r + j] = _mm512_reduce_add_ps(acc[i][j]);
}

/* Rows [r0, r0 + nr): each group of TILE_R weight rows stays in L1 while all input rows pass. */
#define DEFINE_TILE(NAME, BF)                                                                      \
    static void NAME(const float *x, int m, int ldx, const void *w, int k, int r0, int nr,         \
                     float *y, int ldy) {                                                          \
        int r = r0, end = r0 + nr;                                                                 \
        for (; r + TILE_R <= end; r += TILE_R) {                                                   \
            int i = 0;                                                                             \
            for (; i + 4 <= m; i += 4)                                                             \
                tile(x + (size_t)i * ldx, ldx, w, BF, k, r, y + (size_t)i * ldy, ldy, 4, TILE_R);  \
            for (; i < m; i++)                                                                     \
                tile(x + (size_t)i * ldx, ldx, w, BF, k, r, y + (size_t)i * ldy, ldy, 1, TILE_R);  \
        }                                                                                          \
        for (; r < end; r++) {                                                                     \
            int i = 0;                                                                             \
            for (; i + 4 <= m; i += 4)                                                             \
                tile(x + (size_t)i * ldx, ldx, w, BF, k, r, y + (size_t)i * ldy, ldy, 4, 1);       \
            for (; i < m; i++)                                                                     \
                tile(x + (size_t)i * ldx, ldx, w, BF, k, r, y + (size_t)i * ldy, ldy, 1, 1);       \
        }                                                                                          \
    }

DEFINE_TILE(tile_f32, 0)
DEFINE_TILE(tile_bf16, 1)

void mm_tile_avx512(const float *x, int m, int ldx, const mm_weight *w, int r0, int nr, float *y,
                    int ldy) {
    if (w->dt == SPINE_DT_BF16)
        tile_bf16(x, m, ldx, w->data, w->k, r0, nr, y, ldy);
    else
        tile_f32(x, m, ldx, w->data, w->k, r0, nr, y, ldy);
}
