/* sls.c: the scalar reference SLS kernels, row encode/decode, and run-time dispatch. */
#include "kernels.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>

/* Row layouts (docs/MODEL_FORMAT.md):
 *   F32:  dim float32
 *   F16:  dim IEEE half
 *   INT8: dim uint8 q, float32 scale, float32 bias;       x = q * scale + bias
 *   INT4: ceil(dim/2) bytes (element 2i in the low nibble of byte i, 2i+1 in the high),
 *         float16 scale, float16 bias;                    x = q * scale + bias          */
size_t spine_row_bytes(spine_rowtype t, int dim) {
    return sls_row_bytes(t, dim);
}

const char *spine_rowtype_name(spine_rowtype t) {
    switch (t) {
    case SPINE_ROW_F32:
        return "f32";
    case SPINE_ROW_F16:
        return "f16";
    case SPINE_ROW_INT8:
        return "int8";
    case SPINE_ROW_INT4:
        return "int4";
    }
    return "?";
}

int spine_rowtype_parse(const char *s, spine_rowtype *out) {
    static const char *names[] = {"f32", "f16", "int8", "int4"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (spine_rowtype)i;
            return 0;
        }
    }
    return -1;
}

static inline float rd_f32(const uint8_t *p) {
    float f;
    memcpy(&f, p, 4);
    return f;
}
static inline uint16_t rd_u16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* scale and bias of a quantized row */
static inline void row_scale_bias(const sls_table *t, const uint8_t *row, float *s, float *b) {
    if (t->rowtype == SPINE_ROW_INT8) {
        *s = rd_f32(row + t->dim);
        *b = rd_f32(row + t->dim + 4);
    } else {
        size_t nb = ((size_t)t->dim + 1) / 2;
        *s = spine_f16_to_f32(rd_u16(row + nb));
        *b = spine_f16_to_f32(rd_u16(row + nb + 2));
    }
}

static inline float row_q(const sls_table *t, const uint8_t *row, int d) {
    if (t->rowtype == SPINE_ROW_INT8) return (float)row[d];
    uint8_t byte = row[d >> 1];
    return (float)((d & 1) ? (byte >> 4) : (byte & 15));
}

void sls_decode_row(const sls_table *t, int64_t r, float *out) {
    const uint8_t *row = sls_row(t, r);
    switch (t->rowtype) {
    case SPINE_ROW_F32:
        for (int d = 0; d < t->dim; d++) out[d] = rd_f32(row + 4 * (size_t)d);
        break;
    case SPINE_ROW_F16:
        for (int d = 0; d < t->dim; d++) out[d] = spine_f16_to_f32(rd_u16(row + 2 * (size_t)d));
        break;
    case SPINE_ROW_INT8:
    case SPINE_ROW_INT4: {
        float s, b;
        row_scale_bias(t, row, &s, &b);
        for (int d = 0; d < t->dim; d++) out[d] = row_q(t, row, d) * s + b;
        break;
    }
    }
}

void sls_encode_row(spine_rowtype rt, const float *in, int dim, uint8_t *out) {
    switch (rt) {
    case SPINE_ROW_F32:
        memcpy(out, in, (size_t)dim * 4);
        return;
    case SPINE_ROW_F16:
        for (int d = 0; d < dim; d++) {
            uint16_t h = spine_f32_to_f16(in[d]);
            memcpy(out + 2 * (size_t)d, &h, 2);
        }
        return;
    case SPINE_ROW_INT8:
    case SPINE_ROW_INT4: {
        float lo = in[0], hi = in[0];
        for (int d = 1; d < dim; d++) {
            lo = fminf(lo, in[d]);
            hi = fmaxf(hi, in[d]);
        }
        int levels = rt == SPINE_ROW_INT8 ? 255 : 15;
        float scale = (hi - lo) / (float)levels, bias = lo;
        if (rt == SPINE_ROW_INT4) { /* store and use the fp16-rounded values */
            uint16_t hs = spine_f32_to_f16(scale), hb = spine_f32_to_f16(bias);
            scale = spine_f16_to_f32(hs);
            bias = spine_f16_to_f32(hb);
            size_t nb = ((size_t)dim + 1) / 2;
            memset(out, 0, nb);
            memcpy(out + nb, &hs, 2);
            memcpy(out + nb + 2, &hb, 2);
        } else {
            memcpy(out + dim, &scale, 4);
            memcpy(out + dim + 4, &bias, 4);
        }
        float inv = scale > 0 ? 1.0f / scale : 0.0f;
        for (int d = 0; d < dim; d++) {
            float q = nearbyintf((in[d] - bias) * inv);
            q = q < 0 ? 0 : q > (float)levels ? (float)levels : q;
            if (rt == SPINE_ROW_INT8)
                out[d] = (uint8_t)q;
            else
                out[d >> 1] |= (uint8_t)((uint8_t)q << ((d & 1) * 4));
        }
        return;
    }
    }
}

/* The reference: decode each row to floats, accumulate in order. For quantized rows the
 * arithmetic is arranged as the vector kernels do it: sum(w*s*q) + sum(w*b). */
static void sls_scalar(const sls_table *t, const spine_bags *b) {
    int dim = t->dim;
    uint64_t hits = 0;
    for (int32_t bag = 0; bag < b->nbags; bag++) {
        float *out = b->out + (size_t)bag * b->out_stride;
        for (int d = 0; d < dim; d++) out[d] = 0.0f;
        float bsum = 0.0f;
        int64_t s = b->offsets[bag], e = b->offsets[bag + 1];
        for (int64_t p = s; p < e; p++) {
            int64_t idx = b->indices[p];
            float w = b->weights ? b->weights[p] : 1.0f;
            const uint8_t *row = sls_row(t, idx);
            hits += t->hot_index && sls_is_hot(t, row);
            switch (t->rowtype) {
            case SPINE_ROW_F32:
                for (int d = 0; d < dim; d++) out[d] = fmaf(rd_f32(row + 4 * (size_t)d), w, out[d]);
                break;
            case SPINE_ROW_F16:
                for (int d = 0; d < dim; d++)
                    out[d] = fmaf(spine_f16_to_f32(rd_u16(row + 2 * (size_t)d)), w, out[d]);
                break;
            case SPINE_ROW_INT8:
            case SPINE_ROW_INT4: {
                float sc, bi;
                row_scale_bias(t, row, &sc, &bi);
                float ws = w * sc;
                for (int d = 0; d < dim; d++) out[d] = fmaf(row_q(t, row, d), ws, out[d]);
                bsum = fmaf(w, bi, bsum);
                break;
            }
            }
        }
        if (bsum != 0.0f)
            for (int d = 0; d < dim; d++) out[d] += bsum;
        if (b->pooling == SPINE_POOL_MEAN && e > s)
            for (int d = 0; d < dim; d++) out[d] /= (float)(e - s);
    }
    if (hits && t->hot_hits) atomic_fetch_add_explicit(t->hot_hits, hits, memory_order_relaxed);
}

int sls_prefetch_parse(const char *s, sls_prefetch *out) {
    if (!s || (s[0] != 't' && s[0] != 'T') || (s[1] != '0' && s[1] != '1') || s[2] != ':')
        return -1;
    char *end;
    long d = strtol(s + 3, &end, 10);
    if (end == s + 3 || *end || d < 1 || d > SLS_PF_MAX) return -1;
    out->dist = (int)d;
    out->l2 = s[1] == '1';
    return 0;
}

static sls_prefetch prefetch_setting;
static pthread_once_t prefetch_once = PTHREAD_ONCE_INIT;

static void prefetch_init(void) {
    sls_prefetch p = {16, false};
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_is("intel")) p = (sls_prefetch){32, true};
#endif
    const char *e = getenv("SPINE_SLS_PREFETCH");
    sls_prefetch q;
    if (e && *e && sls_prefetch_parse(e, &q) == 0) p = q;
    prefetch_setting = p;
}

const sls_prefetch *sls_prefetch_get(void) {
    pthread_once(&prefetch_once, prefetch_init);
    return &prefetch_setting;
}

/* What this CPU runs, best first (cpu_isa caches it: sls_multi asks on every call). */
static sls_isa cpu_isa_probe(void) {
#if defined(__x86_64__) && defined(SPINE_HAVE_AVX2)
    __builtin_cpu_init();
    /* F16C has no __builtin_cpu_supports name in older compilers: every AVX2 CPU has it */
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl"))
            return SLS_ISA_AVX512;
        return SLS_ISA_AVX2;
    }
#endif
    return SLS_ISA_SCALAR;
}

static sls_isa cpu_isa(void) {
    static _Atomic int isa = -1;
    int v = atomic_load_explicit(&isa, memory_order_relaxed);
    if (v < 0) atomic_store_explicit(&isa, v = (int)cpu_isa_probe(), memory_order_relaxed);
    return (sls_isa)v;
}

int sls_isa_parse(const char *s, sls_isa *out) {
    static const char *names[] = {"scalar", "avx2", "avx512"};
    for (int i = 0; i < 3; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (sls_isa)i;
            return 0;
        }
    return -1;
}

sls_isa sls_best_isa(void) {
    static _Atomic int best = -1;
    int b = atomic_load_explicit(&best, memory_order_relaxed);
    if (b < 0) {
        b = (int)cpu_isa();
        const char *cap = getenv("SPINE_ISA");
        sls_isa c;
        if (cap && *cap && sls_isa_parse(cap, &c) == 0 && (int)c < b) b = (int)c;
        atomic_store_explicit(&best, b, memory_order_relaxed);
    }
    return (sls_isa)b;
}

bool sls_isa_runs(sls_isa isa) {
    return isa == SLS_ISA_SCALAR || (int)isa <= (int)cpu_isa();
}

const char *sls_isa_name(sls_isa isa) {
    return isa == SLS_ISA_AVX512 ? "avx512" : isa == SLS_ISA_AVX2 ? "avx2" : "scalar";
}

sls_fn sls_kernel(spine_rowtype rt, sls_isa isa, bool hot) {
    if (isa == SLS_ISA_SCALAR) return sls_scalar;
#if defined(__x86_64__) && defined(SPINE_HAVE_AVX2)
    if (!sls_isa_runs(isa)) return NULL;
#define PICK(SUF)                                                                                  \
    switch (rt) {                                                                                  \
    case SPINE_ROW_F32:                                                                            \
        return hot ? sls_f32_hot_##SUF : sls_f32_##SUF;                                            \
    case SPINE_ROW_F16:                                                                            \
        return hot ? sls_f16_hot_##SUF : sls_f16_##SUF;                                            \
    case SPINE_ROW_INT8:                                                                           \
        return hot ? sls_int8_hot_##SUF : sls_int8_##SUF;                                          \
    case SPINE_ROW_INT4:                                                                           \
        return hot ? sls_int4_hot_##SUF : sls_int4_##SUF;                                          \
    }
    if (isa == SLS_ISA_AVX512) PICK(avx512)
    if (isa == SLS_ISA_AVX2) PICK(avx2)
#undef PICK
#else
    (void)rt;
    (void)hot;
#endif
    return NULL;
}

/* The index passes' vector bodies run on AVX2 (whole blocks only, rows > 0); the rest here. */
bool sls_indices_in_range(const int64_t *idx, size_t n, int64_t rows, sls_isa isa) {
    if (rows <= 0) return n == 0;
    size_t body = 0;
    bool ok = true;
#if defined(__x86_64__) && defined(SPINE_HAVE_AVX2)
    if (isa >= SLS_ISA_AVX2 && sls_isa_runs(SLS_ISA_AVX2)) {
        body = n & ~(size_t)15;
        ok = sls_indices_in_range_avx2(idx, body, rows);
    }
#else
    (void)isa;
#endif
    for (size_t i = body; i < n; i++) ok &= (uint64_t)idx[i] < (uint64_t)rows;
    return ok;
}

bool sls_widen_indices(const uint8_t *src, int64_t *dst, size_t n, int64_t rows, sls_isa isa) {
    size_t body = 0;
    bool ok = true;
#if defined(__x86_64__) && defined(SPINE_HAVE_AVX2)
    if (rows > 0 && isa >= SLS_ISA_AVX2 && sls_isa_runs(SLS_ISA_AVX2)) {
        body = n & ~(size_t)7;
        ok = sls_widen_indices_avx2(src, dst, body, rows);
    }
#else
    (void)isa;
#endif
    for (size_t i = body; i < n; i++) {
        int32_t v;
        memcpy(&v, src + 4 * i, 4);
        dst[i] = v;
        ok &= (uint64_t)dst[i] < (uint64_t)rows;
    }
    return ok;
}

void sls_multi(const sls_table *t, const spine_bags *b, int n, sls_isa isa) {
#if defined(__x86_64__) && defined(SPINE_HAVE_AVX2)
    if (isa == SLS_ISA_AVX512 && sls_isa_runs(isa)) {
        sls_multi_avx512(t, b, n);
        return;
    }
    if (isa == SLS_ISA_AVX2 && sls_isa_runs(isa)) {
        sls_multi_avx2(t, b, n);
        return;
    }
#endif
    for (int i = 0; i < n; i++)
        if (b[i].nbags > 0) sls_scalar(&t[i], &b[i]);
}
