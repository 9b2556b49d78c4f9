/* attn_avx512.c: one query row's attention over a key/value cache with AVX-512, for head dims
 * of 1, 2, 4 or 8 vectors. The query stays in registers while each key's dot product is taken
 * (four keys at a time), the scores are scaled, maxed, exponentiated (a vector expf) and summed
 * sixteen at a time, and the output stays in registers (two sets of sums, even and odd keys)
 * while the values stream past. The portable path (attn.c) reads and writes the output row for
 * every value and calls expf per key. Sums run in another order than the portable path's:
 * results agree to float rounding, not bitwise. */
#include "attn.h"

#include <immintrin.h>
#include <math.h>

int attn_avx512_fits(int hd) {
    return hd == 16 || hd == 32 || hd == 64 || hd == 128;
}

/* e^x for x in [-87.3, 88.3] (clamped: below it, about 1e-38 instead of less): Cephes' expf, a
 * polynomial in r after x = n ln2 + r (n rounded, |r| <= ln2 / 2), scaled by 2^n: the AVX2
 * kernels' exp256 in sixteen lanes. Here x is a score less the largest, so x <= 0. */
static inline __m512 exp16(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.3f));
    x = _mm512_min_ps(x, _mm512_set1_ps(88.3f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    __m512 y = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(y, n);
}

static inline __attribute__((always_inline)) void row(const float *q, const float *K,
                                                      const float *V, size_t ld, int nk,
                                                      float scale, float *sc, float *o,
                                                      const int NC) {
    __m512 qv[8];
    for (int c = 0; c < NC; c++) qv[c] = _mm512_loadu_ps(q + 16 * c);
    int j = 0;
    for (; j + 4 <= nk; j += 4) {
        __m512 a[4];
        for (int u = 0; u < 4; u++) {
            const float *k = K + (size_t)(j + u) * ld;
            a[u] = _mm512_mul_ps(qv[0], _mm512_loadu_ps(k));
            for (int c = 1; c < NC; c++)
                a[u] = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(k + 16 * c), a[u]);
        }
        for (int u = 0; u < 4; u++) sc[j + u] = _mm512_reduce_add_ps(a[u]);
    }
    for (; j < nk; j++) {
        const float *k = K + (size_t)j * ld;
        __m512 a = _mm512_mul_ps(qv[0], _mm512_loadu_ps(k));
        for (int c = 1; c < NC; c++) a = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(k + 16 * c), a);
        sc[j] = _mm512_reduce_add_ps(a);
    }
    /* scale and max, then exponentiate and sum, sixteen scores at a time */
    const __m512 sv = _mm512_set1_ps(scale);
    __m512 mxv = _mm512_set1_ps(-INFINITY);
    for (j = 0; j < nk; j += 16) {
        __mmask16 mk = nk - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (nk - j)) - 1);
        __m512 s = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, sc + j), sv);
        _mm512_mask_storeu_ps(sc + j, mk, s);
        mxv = _mm512_mask_max_ps(mxv, mk, mxv, s);
    }
    const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(mxv));
    __m512 sum = _mm512_setzero_ps();
    for (j = 0; j < nk; j += 16) {
        __mmask16 mk = nk - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (nk - j)) - 1);
        __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, sc + j), mx));
        e = _mm512_maskz_mov_ps(mk, e);
        _mm512_mask_storeu_ps(sc + j, mk, e);
        sum = _mm512_add_ps(sum, e);
    }
    const float inv = 1.0f / _mm512_reduce_add_ps(sum);
    /* the weighted values: two sets of sums (even and odd keys) hide the FMA latency */
    __m512 o0[8], o1[8];
    for (int c = 0; c < NC; c++) o0[c] = o1[c] = _mm512_setzero_ps();
    for (j = 0; j + 2 <= nk; j += 2) {
        const float *v0 = V + (size_t)j * ld, *v1 = v0 + ld;
        __m512 p0 = _mm512_set1_ps(sc[j]), p1 = _mm512_set1_ps(sc[j + 1]);
        for (int c = 0; c < NC; c++) {
            o0[c] = _mm512_fmadd_ps(p0, _mm512_loadu_ps(v0 + 16 * c), o0[c]);
            o1[c] = _mm512_fmadd_ps(p1, _mm512_loadu_ps(v1 + 16 * c), o1[c]);
        }
    }
    if (j < nk) {
        const float *v0 = V + (size_t)j * ld;
        __m512 p0 = _mm512_set1_ps(sc[j]);
        for (int c = 0; c < NC; c++)
            o0[c] = _mm512_fmadd_ps(p0, _mm512_loadu_ps(v0 + 16 * c), o0[c]);
    }
    const __m512 iv = _mm512_set1_ps(inv);
    for (int c = 0; c < NC; c++)
        _mm512_storeu_ps(o + 16 * c, _mm512_mul_ps(_mm512_add_ps(o0[c], o1[c]), iv));
}

void attn_row_avx512(const float *q, const float *K, const float *V, size_t ld, int nk, int hd,
                     float scale, float *sc, float *o) {
    switch (hd) {
    case 16:
        row(q, K, V, ld, nk, scale, sc, o, 1);
        break;
    case 32:
        row(q, K, V, ld, nk, scale, sc, o, 2);
        break;
    case 64:
        row(q, K, V, ld, nk, scale, sc, o, 4);
        break;
    default:
        row(q, K, V, ld, nk, scale, sc, o, 8);
        break;
    }
}
