/* test_kernels.c: every SLS kernel and row type against the decoded-row reference, on random
 * shapes: dims that are not multiples of the vector width, empty bags, single-row tables, the
 * last row, weights, mean pooling. Also row quantization error bounds and the dot kernel. */
#include "test_util.h"

#include "../../src/kernels/kernels.h"
#include "../../src/kernels/attn.h"
#include "../../src/kernels/matmul.h"
#include "../../src/kernels/membw.h"

#include <math.h>

typedef struct sls_case {
    sls_table t;
    uint8_t *data;
    spine_bags b;
    int64_t *offsets, *indices;
    float *weights, *out, *ref;
} sls_case;

static void make_case(sls_case *c, spine_rng *r, spine_rowtype rt, int dim, int64_t rows, int nbags,
                      bool weighted, spine_pooling pool) {
    memset(c, 0, sizeof *c);
    size_t rb = spine_row_bytes(rt, dim);
    c->data = malloc((size_t)rows * rb);
    float *row = malloc((size_t)dim * sizeof *row);
    for (int64_t i = 0; i < rows; i++) {
        for (int d = 0; d < dim; d++) row[d] = spine_rng_normal(r);
        sls_encode_row(rt, row, dim, c->data + (size_t)i * rb);
    }
    free(row);
    c->t = (sls_table){.data = c->data, .rows = rows, .row_bytes = rb, .dim = dim, .rowtype = rt};
    c->offsets = malloc(((size_t)nbags + 1) * sizeof *c->offsets);
    c->offsets[0] = 0;
    for (int i = 0; i < nbags; i++) {
        int len = spine_rng_below(r, 4) == 0 ? 0 : (int)spine_rng_below(r, 40);
        c->offsets[i + 1] = c->offsets[i] + len;
    }
    int64_t n = c->offsets[nbags];
    c->indices = malloc((size_t)(n + 1) * sizeof *c->indices);
    c->weights = weighted ? malloc((size_t)(n + 1) * sizeof *c->weights) : NULL;
    for (int64_t i = 0; i < n; i++) {
        c->indices[i] =
            spine_rng_below(r, 8) == 0 ? rows - 1 : (int64_t)spine_rng_below(r, (uint64_t)rows);
        if (weighted) c->weights[i] = spine_rng_uniform(r) * 2 - 0.5f;
    }
    size_t stride = (size_t)dim + 3; /* outputs in a wider matrix, as the model writes them */
    c->out = malloc((size_t)nbags * stride * sizeof *c->out);
    c->ref = malloc((size_t)nbags * (size_t)dim * sizeof *c->ref);
    c->b = (spine_bags){nbags, c->offsets, c->indices, c->weights, pool, c->out, stride};
    /* the plainest reference: decode each row, sum in double */
    float *dec = malloc((size_t)dim * sizeof *dec);
    for (int i = 0; i < nbags; i++) {
        for (int d = 0; d < dim; d++) {
            double s = 0;
            for (int64_t p = c->offsets[i]; p < c->offsets[i + 1]; p++) {
                sls_decode_row(&c->t, c->indices[p], dec);
                s += (double)dec[d] * (weighted ? c->weights[p] : 1.0);
            }
            int64_t len = c->offsets[i + 1] - c->offsets[i];
            if (pool == SPINE_POOL_MEAN && len) s /= (double)len;
            c->ref[(size_t)i * dim + d] = (float)s;
        }
    }
    free(dec);
}

static void free_case(sls_case *c) {
    free(c->data);
    free(c->offsets);
    free(c->indices);
    free(c->weights);
    free(c->out);
    free(c->ref);
}

static void check_against_reference(spine_rowtype rt, sls_isa isa) {
    sls_fn k = sls_kernel(rt, isa, false);
    if (!k) {
        print_message("  (skipping %s on %s: not available)\n", spine_rowtype_name(rt),
                      sls_isa_name(isa));
        return;
    }
    spine_rng r;
    spine_rng_seed(&r, 1000 + rt * 10 + isa);
    const int dims[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 128, 130, 200};
    for (size_t di = 0; di < SPINE_ARRAY_LEN(dims); di++) {
        for (int variant = 0; variant < 4; variant++) {
            int dim = dims[di];
            int64_t rows = variant == 0 ? 1 : 1 + (int64_t)spine_rng_below(&r, 3000);
            bool weighted = variant & 1;
            spine_pooling pool = variant == 2 ? SPINE_POOL_MEAN : SPINE_POOL_SUM;
            sls_case c;
            make_case(&c, &r, rt, dim, rows, 1 + (int)spine_rng_below(&r, 20), weighted, pool);
            k(&c.t, &c.b);
            for (int i = 0; i < c.b.nbags; i++) {
                int64_t len = c.offsets[i + 1] - c.offsets[i];
                for (int d = 0; d < dim; d++) {
                    float got = c.out[(size_t)i * c.b.out_stride + d],
                          want = c.ref[(size_t)i * dim + d];
                    float tol = 1e-5f * (float)(len + 1) * (1.0f + fabsf(want));
                    if (!(fabsf(got - want) <= tol))
                        fail_msg("%s/%s dim %d rows %lld bag %d (len %lld) d %d: got %g want %g",
                                 spine_rowtype_name(rt), sls_isa_name(isa), dim, (long long)rows, i,
                                 (long long)len, d, got, want);
                }
            }
            free_case(&c);
        }
    }
}

static void f32_kernels_match_reference(void **s) {
    (void)s;
    check_against_reference(SPINE_ROW_F32, SLS_ISA_SCALAR);
    check_against_reference(SPINE_ROW_F32, SLS_ISA_AVX2);
    check_against_reference(SPINE_ROW_F32, SLS_ISA_AVX512);
}
static void f16_kernels_match_reference(void **s) {
    (void)s;
    check_against_reference(SPINE_ROW_F16, SLS_ISA_SCALAR);
    check_against_reference(SPINE_ROW_F16, SLS_ISA_AVX2);
    check_against_reference(SPINE_ROW_F16, SLS_ISA_AVX512);
}
static void int8_kernels_match_reference(void **s) {
    (void)s;
    check_against_reference(SPINE_ROW_INT8, SLS_ISA_SCALAR);
    check_against_reference(SPINE_ROW_INT8, SLS_ISA_AVX2);
    check_against_reference(SPINE_ROW_INT8, SLS_ISA_AVX512);
}
static void int4_kernels_match_reference(void **s) {
    (void)s;
    check_against_reference(SPINE_ROW_INT4, SLS_ISA_SCALAR);
    check_against_reference(SPINE_ROW_INT4, SLS_ISA_AVX2);
    check_against_reference(SPINE_ROW_INT4, SLS_ISA_AVX512);
}

static void empty_bags_write_zeros(void **s) {
    (void)s;
    for (int rt = 0; rt < 4; rt++) {
        for (int isa = 0; isa <= SLS_ISA_AVX512; isa++) {
            sls_fn k = sls_kernel((spine_rowtype)rt, (sls_isa)isa, false);
            if (!k) continue;
            uint8_t row[64] = {0};
            sls_table t = {.data = row,
                           .rows = 1,
                           .row_bytes = spine_row_bytes((spine_rowtype)rt, 9),
                           .dim = 9,
                           .rowtype = (spine_rowtype)rt};
            int64_t off[3] = {0, 0, 0};
            float out[18];
            for (int i = 0; i < 18; i++) out[i] = 42.0f;
            for (int pool = 0; pool < 2; pool++) {
                spine_bags b = {2, off, NULL, NULL, (spine_pooling)pool, out, 9};
                k(&t, &b);
                for (int i = 0; i < 18; i++) assert_true(out[i] == 0.0f);
            }
        }
    }
}

/* A hot tier over c's table: every row with bit set in `hot` (rows long), copied in order. */
static void make_hot(sls_case *c, const bool *hot, sls_hot_word **index, uint8_t **copy,
                     atomic_uint_fast64_t *hits) {
    int64_t rows = c->t.rows, words = (rows + 63) / 64, n = 0;
    *index = calloc((size_t)words, sizeof **index);
    *copy = malloc((size_t)rows * c->t.row_bytes);
    for (int64_t i = 0; i < rows; i++) {
        if (i % 64 == 0) (*index)[i / 64].rank = (uint64_t)n;
        if (!hot[i]) continue;
        (*index)[i / 64].bits |= 1ull << (i % 64);
        memcpy(*copy + (size_t)n++ * c->t.row_bytes, c->data + (size_t)i * c->t.row_bytes,
               c->t.row_bytes);
    }
    c->t.hot_index = *index;
    c->t.hot_data = *copy;
    c->t.hot_hits = hits;
}

/* Every ISA this CPU runs gives bitwise the scalar kernel's results (the same fused
 * multiply-adds in the same order), plain or through a hot tier, one table at a time or in one
 * multi-table call; the hot kernels count exactly the rows they served from the copy. */
static void simd_kernels_agree_bitwise(void **s) {
    (void)s;
    spine_rng r;
    spine_rng_seed(&r, 4242);
    const int dims[] = {1, 5, 15, 16, 17, 32, 33, 48, 64, 65, 100, 127, 128, 129, 200, 256, 300};
    for (int rt = 0; rt < 4; rt++)
        for (size_t di = 0; di < SPINE_ARRAY_LEN(dims); di++)
            for (int variant = 0; variant < 3; variant++) {
                const int dim = dims[di];
                const int64_t rows = 1 + (int64_t)spine_rng_below(&r, 700);
                sls_case c;
                make_case(&c, &r, (spine_rowtype)rt, dim, rows, 1 + (int)spine_rng_below(&r, 30),
                          variant == 1, variant == 2 ? SPINE_POOL_MEAN : SPINE_POOL_SUM);
                const size_t n = (size_t)c.b.nbags * c.b.out_stride;
                float *want = malloc(n * sizeof *want);
                memset(c.out, 0, n * sizeof *c.out);
                sls_kernel((spine_rowtype)rt, SLS_ISA_SCALAR, false)(&c.t, &c.b);
                memcpy(want, c.out, n * sizeof *want);
                bool *hot = malloc((size_t)rows * sizeof *hot);
                uint64_t hot_reads = 0;
                for (int64_t i = 0; i < rows; i++) hot[i] = spine_rng_below(&r, 3) == 0;
                for (int64_t p = 0; p < c.offsets[c.b.nbags]; p++) hot_reads += hot[c.indices[p]];
                for (int isa = SLS_ISA_SCALAR; isa <= SLS_ISA_AVX512; isa++) {
                    if (!sls_isa_runs((sls_isa)isa)) continue;
                    for (int mode = 0; mode < 3; mode++) { /* plain, hot, multi-table */
                        sls_hot_word *index = NULL;
                        uint8_t *copy = NULL;
                        atomic_uint_fast64_t hits = 0;
                        sls_case h = c;
                        if (mode == 1) make_hot(&h, hot, &index, &copy, &hits);
                        for (size_t i = 0; i < n; i++) h.out[i] = 0.0f;
                        if (mode == 2)
                            sls_multi(&h.t, &h.b, 1, (sls_isa)isa);
                        else
                            sls_kernel((spine_rowtype)rt, (sls_isa)isa, mode == 1)(&h.t, &h.b);
                        for (int bag = 0; bag < c.b.nbags; bag++)
                            for (int d = 0; d < dim; d++) {
                                size_t i = (size_t)bag * c.b.out_stride + (size_t)d;
                                if (!(h.out[i] == want[i]))
                                    fail_msg("%s on %s (%s) dim %d bag %d d %d: %.9g, scalar %.9g",
                                             spine_rowtype_name((spine_rowtype)rt),
                                             sls_isa_name((sls_isa)isa),
                                             mode == 0   ? "plain"
                                             : mode == 1 ? "hot"
                                                         : "multi",
                                             dim, bag, d, h.out[i], want[i]);
                            }
                        if (mode == 1) assert_int_equal(atomic_load(&hits), hot_reads);
                        free(index);
                        free(copy);
                    }
                }
                free(hot);
                free(want);
                free_case(&c);
            }
}

/* The settings read from the environment: what parses, and what is refused. */
static void isa_and_prefetch_settings_parse(void **s) {
    (void)s;
    sls_isa isa;
    assert_int_equal(sls_isa_parse("avx512", &isa), 0);
    assert_int_equal(isa, SLS_ISA_AVX512);
    assert_int_equal(sls_isa_parse("scalar", &isa), 0);
    assert_int_equal(isa, SLS_ISA_SCALAR);
    assert_int_equal(sls_isa_parse("avx", &isa), -1);
    assert_int_equal(sls_isa_parse("", &isa), -1);
    assert_true(sls_isa_runs(SLS_ISA_SCALAR));
    assert_true(sls_best_isa() == SLS_ISA_SCALAR || sls_isa_runs(sls_best_isa()));
    sls_prefetch p;
    assert_int_equal(sls_prefetch_parse("t1:32", &p), 0);
    assert_true(p.l2 && p.dist == 32);
    assert_int_equal(sls_prefetch_parse("t0:1", &p), 0);
    assert_true(!p.l2 && p.dist == 1);
    const char *bad[] = {
        "t2:16", "t0:0", "t0:129", "t0:", "t0:16x", "16", "t1:-4", "t1:99999999999"};
    for (size_t i = 0; i < SPINE_ARRAY_LEN(bad); i++)
        assert_int_equal(sls_prefetch_parse(bad[i], &p), -1);
    const sls_prefetch *cur = sls_prefetch_get();
    assert_true(cur->dist >= 1 && cur->dist <= SLS_PF_MAX);
}

static void quantization_error_is_bounded(void **s) {
    (void)s;
    spine_rng r;
    spine_rng_seed(&r, 5);
    for (int rt = 1; rt < 4; rt++) {
        for (int dim = 1; dim < 70; dim++) {
            float in[70], out[70];
            uint8_t enc[200];
            float lo = 1e30f, hi = -1e30f;
            for (int d = 0; d < dim; d++) {
                in[d] = spine_rng_normal(&r);
                lo = fminf(lo, in[d]);
                hi = fmaxf(hi, in[d]);
            }
            sls_encode_row((spine_rowtype)rt, in, dim, enc);
            sls_table t = {.data = enc,
                           .rows = 1,
                           .row_bytes = spine_row_bytes((spine_rowtype)rt, dim),
                           .dim = dim,
                           .rowtype = (spine_rowtype)rt};
            sls_decode_row(&t, 0, out);
            /* half a step of the quantizer (plus fp16 rounding of scale and bias for int4) */
            float step = rt == SPINE_ROW_INT8   ? (hi - lo) / 255
                         : rt == SPINE_ROW_INT4 ? (hi - lo) / 15
                                                : 0;
            for (int d = 0; d < dim; d++) {
                float tol = rt == SPINE_ROW_F16
                                ? fabsf(in[d]) * 0x1p-11f + 1e-7f
                                : step * 0.5f + 4e-3f * (fabsf(lo) + step * 15) + 1e-6f;
                if (!(fabsf(out[d] - in[d]) <= tol))
                    fail_msg("%s dim %d d %d: %g -> %g (tol %g)",
                             spine_rowtype_name((spine_rowtype)rt), dim, d, in[d], out[d], tol);
            }
        }
    }
}

static void dot_interaction_matches_naive(void **s) {
    (void)s;
    spine_rng r;
    spine_rng_seed(&r, 9);
    for (int nf = 1; nf < 40; nf += 3) {
        for (int d = 1; d < 70; d += 7) {
            float feat[40 * 70], out[40 * 41];
            for (int i = 0; i < nf * d; i++) feat[i] = spine_rng_normal(&r);
            for (int self = 0; self < 2; self++) {
                dense_dot_interact(feat, nf, d, self, out);
                size_t o = 0;
                for (int i = 0; i < nf; i++)
                    for (int j = 0; j < (self ? i + 1 : i); j++) {
                        double ref = 0;
                        for (int k = 0; k < d; k++)
                            ref += (double)feat[i * d + k] * feat[j * d + k];
                        assert_true(fabs(out[o++] - ref) <= 1e-4 * (1 + fabs(ref)));
                    }
            }
        }
    }
}

/* Attention rows, every path, against softmax in double: head dims the AVX-512 path takes (16,
 * 32, 64, 128) and one it leaves to the portable path (48), key counts around its blocks of 16
 * and 64, 1 to 5 query rows sharing the keys (its groups of 4 and the rows left over), strided
 * rows of transposed keys and of values, and scores spread wide enough (queries 40x larger)
 * that most weights underflow. The scratch holds exactly n x nk floats (ASan sees an overrun). */
static void attention_rows_match_reference(void **s) {
    (void)s;
    spine_rng r;
    spine_rng_seed(&r, 21);
    const int hds[] = {16, 32, 48, 64, 128}, nks[] = {1, 2, 3, 5, 15, 16, 17, 63, 64, 65, 129, 200};
    const int ns[] = {1, 2, 4, 5};
    int best = (int)sls_best_isa();
    for (size_t a = 0; a < sizeof hds / sizeof *hds; a++)
        for (size_t b = 0; b < sizeof nks / sizeof *nks; b++)
            for (size_t c = 0; c < sizeof ns / sizeof *ns; c++) {
                int hd = hds[a], nk = nks[b], n = ns[c], wide = (a + b + c) % 2;
                size_t ld = (size_t)hd * 3 + 5, ldk = (size_t)nk + 7; /* V rows; Kt rows */
                size_t ldq = (size_t)hd + 3, ldo = (size_t)hd + 1;
                float *q = malloc((size_t)n * ldq * sizeof *q);
                float *sc = malloc((size_t)n * nk * sizeof *sc);
                float *K = malloc((size_t)hd * ldk * sizeof *K),
                      *V = malloc((size_t)nk * ld * sizeof *V);
                float *o = calloc((size_t)n * ldo, sizeof *o),
                      *o2 = calloc((size_t)n * ldo, sizeof *o2);
                double *p = malloc((size_t)nk * sizeof *p);
                for (size_t i = 0; i < (size_t)n * ldq; i++)
                    q[i] = spine_rng_normal(&r) * (wide ? 40.0f : 1.0f);
                for (size_t i = 0; i < (size_t)hd * ldk; i++) K[i] = spine_rng_normal(&r);
                for (size_t i = 0; i < (size_t)nk * ld; i++) V[i] = spine_rng_normal(&r);
                float scale = 1.0f / sqrtf((float)hd);
                for (int isa = 0; isa <= best; isa++) {
                    mm_set_isa(isa);
                    attn_rows(q, ldq, n, K, ldk, V, ld, nk, hd, scale, sc, o, ldo);
                    for (int row = 0; row < n; row++) {
                        const float *qr = q + (size_t)row * ldq;
                        /* a float score summed over hd terms in order is off by at most about
                         * hd u sum |q_d K_dj| (u = 2^-24); a weight moves by its score's error
                         * less the mean error, so an output by at most twice the largest score
                         * error times its largest value: the tolerance allows twice that again */
                        double mx = -INFINITY, sum = 0, ds = 0;
                        for (int j = 0; j < nk; j++) {
                            double d = 0, m = 0;
                            for (int i = 0; i < hd; i++) {
                                d += (double)qr[i] * K[(size_t)i * ldk + j];
                                m += fabs((double)qr[i] * K[(size_t)i * ldk + j]);
                            }
                            p[j] = d * scale;
                            mx = p[j] > mx ? p[j] : mx;
                            ds = fmax(ds, m * scale * hd * 0x1p-24);
                        }
                        for (int j = 0; j < nk; j++) sum += p[j] = exp(p[j] - mx);
                        for (int i = 0; i < hd; i++) {
                            double ref = 0, vmax = 0;
                            for (int j = 0; j < nk; j++) {
                                ref += p[j] / sum * V[(size_t)j * ld + i];
                                vmax = fmax(vmax, fabs(V[(size_t)j * ld + i]));
                            }
                            float got = o[(size_t)row * ldo + i];
                            if (fabs(got - ref) > 2e-5 * (1 + fabs(ref)) + 4 * ds * vmax)
                                fail_msg("isa %d, head dim %d, %d keys, row %d of %d%s: out[%d] "
                                         "%.8f, want %.8f",
                                         isa, hd, nk, row, n, wide ? " (wide scores)" : "", i, got,
                                         ref);
                        }
                    }
                    /* the path the ISA chooses, and no other */
                    if (isa == 2 && attn_avx512_fits(hd))
                        attn_rows_avx512(q, ldq, n, K, ldk, V, ld, nk, hd, scale, sc, o2, ldo);
                    else
                        attn_rows_portable(q, ldq, n, K, ldk, V, ld, nk, hd, scale, sc, o2, ldo);
                    assert_memory_equal(o, o2, (size_t)n * ldo * sizeof *o);
                }
                mm_set_isa(-1);
                free(q), free(sc), free(K), free(V), free(o), free(o2), free(p);
            }
}

static void lines_per_row_counts_straddles(void **s) {
    (void)s;
    assert_true(membw_lines_per_row(64) == 1.0);
    assert_true(membw_lines_per_row(256) == 4.0);
    assert_true(membw_lines_per_row(72) == 2.0); /* int8 dim 64: always two lines */
    assert_true(membw_lines_per_row(36) == 1.5); /* int4 dim 64: half of them straddle */
    assert_true(membw_lines_per_row(1) == 1.0);
    assert_true(membw_lines_per_row(65) == 2.0);  /* 65 bytes never reach a third line */
    assert_true(membw_lines_per_row(100) == 2.5); /* starts 4k apart: 3 lines from offset 29 */
    assert_true(membw_lines_per_row(128) == 2.0);
}

/* Row prefetch covers every line of a row for any size and offset, and asks nothing twice for
 * rows of an aligned table that never straddle. */
static void row_prefetch_covers_every_line(void **state) {
    (void)state;
    for (size_t bytes = 1; bytes <= 300; bytes++)
        for (uintptr_t a = 0; a < 64; a++) {
            const uintptr_t p = 4096 + a, first = p / 64, last = (p + bytes - 1) / 64;
            bool got[8] = {false};
            for (size_t o = 0; o < bytes; o += 64) got[(p + o) / 64 - first] = true;
            if (sls_asks_last_byte(p, bytes)) got[last - first] = true;
            for (uintptr_t l = first; l <= last; l++)
                if (!got[l - first])
                    fail_msg("row of %zu bytes at offset %u: line %u missed", bytes, (unsigned)a,
                             (unsigned)(l - first));
        }
    const size_t never[] = {64, 128, 256, 512, 72, 136, 264};
    for (size_t i = 0; i < sizeof never / sizeof *never; i++)
        for (uintptr_t k = 0; k < 64; k++) assert_false(sls_asks_last_byte(k * never[i], never[i]));
    assert_true(sls_asks_last_byte(0, 36)); /* int4 dim 64: some rows straddle: always asked */
}

int test_group_kernels(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(row_prefetch_covers_every_line),
        cmocka_unit_test(f32_kernels_match_reference),
        cmocka_unit_test(f16_kernels_match_reference),
        cmocka_unit_test(int8_kernels_match_reference),
        cmocka_unit_test(int4_kernels_match_reference),
        cmocka_unit_test(empty_bags_write_zeros),
        cmocka_unit_test(simd_kernels_agree_bitwise),
        cmocka_unit_test(isa_and_prefetch_settings_parse),
        cmocka_unit_test(quantization_error_is_bounded),
        cmocka_unit_test(dot_interaction_matches_naive),
        cmocka_unit_test(lines_per_row_counts_straddles),
        cmocka_unit_test(attention_rows_match_reference),
    };
    return cmocka_run_group_tests_name("kernels", tests, NULL, NULL);
}
