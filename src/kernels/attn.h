/* attn.h: attention for query rows over a key/value cache (scores, softmax, weighted sum of
 * the values): the portable path and the AVX-512 one, chosen by mm_isa(). */
#ifndef SPINE_ATTN_H
#define SPINE_ATTN_H

#include <stddef.h>

/* For each of n query rows q_i (at q + i ldq; rows that share one key/value head):
 * o_i[0..hd) = sum_j p_ij V_j, p_i = softmax_j(scale * q_i . K_j) over the nk >= 1 keys j. The
 * keys come transposed: element d of key j at Kt[d * ldk + j] (a cache laid out [hd][positions],
 * so the scores of consecutive keys are one vector op per element of q, with no horizontal sum);
 * value j at V + j * ldv; o_i at o + i ldo. sc: scratch for n * nk floats. */
void attn_rows(const float *q, size_t ldq, int n, const float *Kt, size_t ldk, const float *V,
               size_t ldv, int nk, int hd, float scale, float *sc, float *o, size_t ldo);
/* The portable path alone, for tests. */
void attn_rows_portable(const float *q, size_t ldq, int n, const float *Kt, size_t ldk,
                        const float *V, size_t ldv, int nk, int hd, float scale, float *sc,
                        float *o, size_t ldo);
/* AVX-512, head dims 16, 32, 64 and 128 only (attn_avx512_fits). */
int attn_avx512_fits(int hd);
void attn_rows_avx512(const float *q, size_t ldq, int n, const float *Kt, size_t ldk,
                      const float *V, size_t ldv, int nk, int hd, float scale, float *sc, float *o,
                      size_t ldo);

#endif
