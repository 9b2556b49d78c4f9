/* attn.h: attention for one query row over a key/value cache (scores, softmax, weighted sum of
 * the values): the portable path and the AVX-512 one, chosen by mm_isa(). */
#ifndef SPINE_ATTN_H
#define SPINE_ATTN_H

#include <stddef.h>

/* o[0..hd) = sum_j p_j V_j, p = softmax_j(scale * q . K_j) over the nk >= 1 keys j; K_j at
 * K + j * ld floats, V_j at V + j * ld. sc: scratch for nk floats. */
void attn_row(const float *q, const float *K, const float *V, size_t ld, int nk, int hd,
              float scale, float *sc, float *o);
/* The portable path alone (AVX2 dot and axpy where present), for tests. */
void attn_row_portable(const float *q, const float *K, const float *V, size_t ld, int nk, int hd,
                       float scale, float *sc, float *o);
/* AVX-512, head dims 16, 32, 64 and 128 only (attn_avx512_fits). */
int attn_avx512_fits(int hd);
void attn_row_avx512(const float *q, const float *K, const float *V, size_t ld, int nk, int hd,
                     float scale, float *sc, float *o);

#endif
