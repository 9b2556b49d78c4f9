/* attn_avx512.c: attention of query rows that share a key/value head (grouped-query attention)
 * over its cache, with AVX-512, for head dims of 1, 2, 4 or 8 vectors. Four rows at a time
 * share every load: the scores are taken sixteen keys to a vector over the transposed keys (64
 * keys at a time, one FMA per element of the query, no horizontal sums), then scaled, maxed,
 * exponentiated (a vector expf) and summed sixteen at a time, and the outputs stay in registers
 * while the values stream past. The portable path (attn.c) calls expf per key and reads and
 * writes the output row for every value: results agree to float rounding, not bitwise. */
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

/* Scores of G query rows (at q + g ldq) against NB blocks of 16 keys from j0 (the last masked
 * to nk), into sc + g ldsc + j: each key's sum over d in order, one FMA per element; the G rows
 * share each load of the keys, and the G x NB sums are independent (FMA latency hidden). */
static inline __attribute__((always_inline)) void scores(const float *q, size_t ldq,
                                                         const float *Kt, size_t ldk, int j0,
                                                         int nk, int hd, float *sc, size_t ldsc,
                                                         const int G, const int NB) {
    __mmask16 mk[4];
    __m512 a[4][4];
    for (int u = 0; u < NB; u++) {
        int n = nk - j0 - 16 * u;
        mk[u] = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
        for (int g = 0; g < G; g++) a[g][u] = _mm512_setzero_ps();
    }
    for (int d = 0; d < hd; d++) {
        const float *kd = Kt + (size_t)d * ldk + j0;
        __m512 k[4];
        for (int u = 0; u < NB; u++) k[u] = _mm512_maskz_loadu_ps(mk[u], kd + 16 * u);
        for (int g = 0; g < G; g++) {
            const __m512 qd = _mm512_set1_ps(q[(size_t)g * ldq + d]);
            for (int u = 0; u < NB; u++) a[g][u] = _mm512_fmadd_ps(qd, k[u], a[g][u]);
        }
    }
    for (int g = 0; g < G; g++)
        for (int u = 0; u < NB; u++)
            _mm512_mask_storeu_ps(sc + (size_t)g * ldsc + j0 + 16 * u, mk[u], a[g][u]);
}

/* sc[0..nk) scaled, then e^(s - max): returns 1 / their sum */
static float softmax(float *sc, int nk, float scale) {
    const __m512 sv = _mm512_set1_ps(scale);
    __m512 mxv = _mm512_set1_ps(-INFINITY);
    for (int j = 0; j < nk; j += 16) {
        __mmask16 mk = nk - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (nk - j)) - 1);
        __m512 s = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, sc + j), sv);
        _mm512_mask_storeu_ps(sc + j, mk, s);
        mxv = _mm512_mask_max_ps(mxv, mk, mxv, s);
    }
    const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(mxv));
    __m512 sum = _mm512_setzero_ps();
    for (int j = 0; j < nk; j += 16) {
        __mmask16 mk = nk - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (nk - j)) - 1);
        __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, sc + j), mx));
        e = _mm512_maskz_mov_ps(mk, e);
        _mm512_mask_storeu_ps(sc + j, mk, e);
        sum = _mm512_add_ps(sum, e);
    }
    return 1.0f / _mm512_reduce_add_ps(sum);
}

/* o_g[16 c0 .. 16 (c0 + CH)) = inv_g sum_j p_gj V_j for G rows: the sums stay in registers
 * while the values stream past, each value load shared by the G rows; one row alone keeps two
 * sets of sums (even and odd keys) to hide the FMA latency. */
static inline __attribute__((always_inline)) void values(const float *sc, size_t ldsc,
                                                         const float *inv, const float *V,
                                                         size_t ldv, int nk, float *o, size_t ldo,
                                                         int c0, const int G, const int CH) {
    const int S = G == 1 ? 2 : 1;
    __m512 acc[2][4][4];
    for (int e = 0; e < S; e++)
        for (int g = 0; g < G; g++)
            for (int c = 0; c < CH; c++) acc[e][g][c] = _mm512_setzero_ps();
    int j = 0;
    for (; j + S <= nk; j += S)
        for (int e = 0; e < S; e++) {
            const float *v = V + (size_t)(j + e) * ldv + 16 * c0;
            __m512 vv[4];
            for (int c = 0; c < CH; c++) vv[c] = _mm512_loadu_ps(v + 16 * c);
            for (int g = 0; g < G; g++) {
                const __m512 p = _mm512_set1_ps(sc[(size_t)g * ldsc + j + e]);
                for (int c = 0; c < CH; c++) acc[e][g][c] = _mm512_fmadd_ps(p, vv[c], acc[e][g][c]);
            }
        }
    if (j < nk) { /* one row alone, an odd count: the last key */
        const float *v = V + (size_t)j * ldv + 16 * c0;
        const __m512 p = _mm512_set1_ps(sc[j]);
        for (int c = 0; c < CH; c++)
            acc[0][0][c] = _mm512_fmadd_ps(p, _mm512_loadu_ps(v + 16 * c), acc[0][0][c]);
    }
    for (int g = 0; g < G; g++)
        for (int c = 0; c < CH; c++) {
            __m512 t = S == 2 ? _mm512_add_ps(acc[0][g][c], acc[1][g][c]) : acc[0][g][c];
            _mm512_storeu_ps(o + (size_t)g * ldo + 16 * (c0 + c),
                             _mm512_mul_ps(t, _mm512_set1_ps(inv[g])));
        }
}

/* G (1 or 4) query rows sharing one key/value head; head dim 16 NC */
static inline __attribute__((always_inline)) void
rows(const float *q, size_t ldq, const float *Kt, size_t ldk, const float *V, size_t ldv, int nk,
     int hd, float scale, float *sc, float *o, size_t ldo, const int G, const int NC) {
    const size_t ldsc = (size_t)nk;
    int j = 0;
    for (; j + 64 <= nk; j += 64) scores(q, ldq, Kt, ldk, j, nk, hd, sc, ldsc, G, 4);
    for (; j < nk; j += 16) scores(q, ldq, Kt, ldk, j, nk, hd, sc, ldsc, G, 1);
    float inv[4];
    for (int g = 0; g < G; g++) inv[g] = softmax(sc + (size_t)g * ldsc, nk, scale);
    const int CH = NC < 4 ? NC : 4; /* output vectors per pass over the values */
    for (int c0 = 0; c0 < NC; c0 += CH) values(sc, ldsc, inv, V, ldv, nk, o, ldo, c0, G, CH);
}

#define ROWS_NC(G)                                                                                 \
    switch (hd) {                                                                                  \
    case 16:                                                                                       \
        rows(q, ldq, Kt, ldk, V, ldv, nk, hd, scale, sc, o, ldo, G, 1);                            \
        break;                                                                                     \
    case 32:                                                                                       \
        rows(q, ldq, Kt, ldk, V, ldv, nk, hd, scale, sc, o, ldo, G, 2);                            \
        break;                                                                                     \
    case 64:                                                                                       \
        rows(q, ldq, Kt, ldk, V, ldv, nk, hd, scale, sc, o, ldo, G, 4);                            \
        break;                                                                                     \
    default:                                                                                       \
        rows(q, ldq, Kt, ldk, V, ldv, nk, hd, scale, sc, o, ldo, G, 8);                            \
        break;                                                                                     \
    }

void attn_rows_avx512(const float *q, size_t ldq, int n, const float *Kt, size_t ldk,
                      const float *V, size_t ldv, int nk, int hd, float scale, float *sc, float *o,
                      size_t ldo) {
    for (; n >= 4; n -= 4, q += 4 * ldq, o += 4 * ldo) ROWS_NC(4)
    for (; n > 0; n--, q += ldq, o += ldo) ROWS_NC(1)
}
