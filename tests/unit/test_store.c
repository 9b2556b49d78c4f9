/* test_store.c: the store interface: bounds checks name table and position, malformed CSR
 * batches are refused, statistics count. */
#include "test_util.h"

#include "../../src/kernels/kernels.h"

#include <math.h>
#include <string.h>

static spine_store *make_store(float *rows, int64_t n, int dim) {
    for (int64_t i = 0; i < n * dim; i++) rows[i] = (float)i;
    spine_store *s;
    assert_int_equal(spine_store_mem_create("clicks", rows, n, dim, SPINE_ROW_F32, &s, NULL),
                     SPINE_OK);
    return s;
}

static void out_of_range_index_names_table_and_position(void **state) {
    (void)state;
    float rows[40];
    spine_store *s = make_store(rows, 10, 4);
    int64_t off[3] = {0, 2, 4}, idx[4] = {1, 9, 3, 10};
    float out[8];
    spine_bags b = {2, off, idx, NULL, SPINE_POOL_SUM, out, 4};
    assert_fails_with(spine_store_lookup(s, &b, err), SPINE_ERR_RANGE,
                      "table 'clicks': index 10 at values[3] is outside [0, 10)");
    idx[3] = -1;
    assert_fails_with(spine_store_lookup(s, &b, err), SPINE_ERR_RANGE, "index -1 at values[3]");
    idx[3] = INT64_MAX;
    assert_fails_with(spine_store_lookup(s, &b, err), SPINE_ERR_RANGE, "values[3]");
    spine_store_free(s);
}

/* The vectorized range check (groups of 16, then a tail) on every ISA this CPU runs: one bad
 * index anywhere, of every kind, is found; indices 0 and rows - 1 pass. */
static void range_check_finds_any_bad_index_on_every_isa(void **state) {
    (void)state;
    const size_t ns[] = {0, 1, 3, 15, 16, 17, 33, 64, 100};
    const int64_t rowss[] = {1, 10, (int64_t)1 << 40, INT64_MAX};
    int64_t idx[100];
    for (int isa = SLS_ISA_SCALAR; isa <= SLS_ISA_AVX512; isa++) {
        if (!sls_isa_runs((sls_isa)isa)) continue;
        for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
            for (size_t r = 0; r < sizeof rowss / sizeof *rowss; r++) {
                const size_t n = ns[a];
                const int64_t rows = rowss[r];
                for (size_t i = 0; i < n; i++) idx[i] = i % 3 == 0 ? rows - 1 : (int64_t)(i % 2);
                if (rows == 1)
                    for (size_t i = 0; i < n; i++) idx[i] = 0;
                assert_true(sls_indices_in_range(idx, n, rows, (sls_isa)isa));
                assert_int_equal(sls_indices_in_range(idx, n, 0, (sls_isa)isa), n == 0);
                const int64_t bad[] = {rows, -1, INT64_MIN, rows == INT64_MAX ? -2 : rows + 1};
                for (size_t p = 0; p < n; p++)
                    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
                        const int64_t keep = idx[p];
                        idx[p] = bad[k];
                        assert_false(sls_indices_in_range(idx, n, rows, (sls_isa)isa));
                        idx[p] = keep;
                    }
            }
    }
    /* through the store: the message still names the first bad position past the vector body */
    float rows[40];
    spine_store *s = make_store(rows, 10, 4);
    int64_t off[3] = {0, 50, 100}, many[100] = {0};
    float out[8];
    many[77] = 10;
    many[90] = -5;
    spine_bags b = {2, off, many, NULL, SPINE_POOL_SUM, out, 4};
    assert_fails_with(spine_store_lookup(s, &b, err), SPINE_ERR_RANGE, "index 10 at values[77]");
    spine_store_free(s);
}

/* The server's widening of INT32 wire indices: every value copied exactly (sign-extended),
 * and one bad value anywhere (vector body or tail) reported, on every ISA this CPU runs. */
static void widening_copies_and_checks_every_index_on_every_isa(void **state) {
    (void)state;
    const size_t ns[] = {0, 1, 7, 8, 9, 16, 31, 100};
    const int64_t rowss[] = {1, 10, INT32_MAX, (int64_t)INT32_MAX + 1, (int64_t)1 << 40};
    int32_t src[100];
    int64_t dst[100];
    for (int isa = SLS_ISA_SCALAR; isa <= SLS_ISA_AVX512; isa++) {
        if (!sls_isa_runs((sls_isa)isa)) continue;
        for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
            for (size_t r = 0; r < sizeof rowss / sizeof *rowss; r++) {
                const size_t n = ns[a];
                const int64_t rows = rowss[r], top = SPINE_MIN(rows - 1, (int64_t)INT32_MAX);
                for (size_t i = 0; i < n; i++)
                    src[i] = i % 3 == 0 ? (int32_t)top : (int32_t)(i % 2);
                if (rows == 1)
                    for (size_t i = 0; i < n; i++) src[i] = 0;
                memset(dst, 0x55, sizeof dst);
                assert_true(sls_widen_indices((const uint8_t *)src, dst, n, rows, (sls_isa)isa));
                for (size_t i = 0; i < n; i++) assert_true(dst[i] == src[i]);
                assert_int_equal(sls_widen_indices((const uint8_t *)src, dst, n, 0, (sls_isa)isa),
                                 n == 0);
                int32_t bad[4] = {-1, INT32_MIN, -1, INT32_MIN};
                if (rows <= INT32_MAX) bad[2] = (int32_t)rows;
                if (rows < INT32_MAX) bad[3] = (int32_t)rows + 1;
                for (size_t p = 0; p < n; p++)
                    for (size_t k = 0; k < 4; k++) {
                        const int32_t keep = src[p];
                        src[p] = bad[k];
                        assert_false(
                            sls_widen_indices((const uint8_t *)src, dst, n, rows, (sls_isa)isa));
                        for (size_t i = 0; i < n; i++) assert_true(dst[i] == src[i]);
                        src[p] = keep;
                    }
            }
    }
}

static void malformed_batches_are_refused(void **state) {
    (void)state;
    float rows[40];
    spine_store *s = make_store(rows, 10, 4);
    int64_t idx[4] = {1, 2, 3, 4};
    float out[8];
    int64_t dec[3] = {0, 3, 2};
    spine_bags b = {2, dec, idx, NULL, SPINE_POOL_SUM, out, 4};
    assert_fails_with(spine_store_lookup(s, &b, err), SPINE_ERR_INVALID, "negative length");
    int64_t neg[3] = {-1, 0, 1};
    b.offsets = neg;
    assert_fails_with(spine_store_lookup(s, &b, err), SPINE_ERR_INVALID, "negative offset");
    int64_t ok[3] = {0, 1, 2};
    b.offsets = ok;
    b.out_stride = 3;
    assert_fails_with(spine_store_lookup(s, &b, err), SPINE_ERR_INVALID, "stride");
    b.out_stride = 4;
    b.nbags = -1;
    assert_fails_with(spine_store_lookup(s, &b, err), SPINE_ERR_INVALID, "malformed");
    spine_store_free(s);
}

static void lookups_pool_rows_and_count(void **state) {
    (void)state;
    float rows[40];
    spine_store *s = make_store(rows, 10, 4);
    int64_t off[3] = {1, 3, 3}, idx[4] = {7, 1, 2, 5}; /* offsets need not start at 0 */
    float out[8] = {0};
    spine_bags b = {2, off, idx, NULL, SPINE_POOL_SUM, out, 4};
    assert_int_equal(spine_store_lookup(s, &b, NULL), SPINE_OK);
    for (int d = 0; d < 4; d++) {
        assert_true(out[d] == rows[1 * 4 + d] + rows[2 * 4 + d]);
        assert_true(out[4 + d] == 0.0f);
    }
    spine_store_stats st;
    spine_store_stats_get(s, &st);
    assert_int_equal(st.lookups, 2);
    assert_int_equal(st.rows_read, 2);
    spine_store_free(s);
}

static void create_refuses_empty_tables(void **state) {
    (void)state;
    spine_store *s;
    float r[4] = {0};
    assert_fails_with(spine_store_mem_create("t", r, 0, 4, SPINE_ROW_F32, &s, err),
                      SPINE_ERR_INVALID, "0 rows");
    assert_fails_with(spine_store_mem_create("t", r, 1, 0, SPINE_ROW_F32, &s, err),
                      SPINE_ERR_INVALID, "dim 0");
}

static void hot_store_returns_exactly_what_the_plain_store_returns(void **state) {
    (void)state;
    spine_rng r;
    spine_rng_seed(&r, 31);
    for (int rt = 0; rt < 4; rt++) {
        const int dim = 37; /* not a multiple of the vector width */
        const int64_t rows = 5000;
        size_t rb = spine_row_bytes((spine_rowtype)rt, dim);
        uint8_t *data = malloc((size_t)rows * rb);
        for (size_t i = 0; i < (size_t)rows * rb; i++) data[i] = (uint8_t)spine_rng_next(&r);
        if (rt == SPINE_ROW_F32 || rt == SPINE_ROW_F16) { /* avoid NaN bit patterns */
            float f[64];
            for (int64_t i = 0; i < rows; i++) {
                for (int d = 0; d < dim; d++) f[d] = spine_rng_normal(&r);
                if (rt == SPINE_ROW_F32)
                    memcpy(data + (size_t)i * rb, f, rb);
                else
                    for (int d = 0; d < dim; d++) {
                        uint16_t h = spine_f32_to_f16(f[d]);
                        memcpy(data + (size_t)i * rb + 2 * (size_t)d, &h, 2);
                    }
            }
        } else { /* finite scale and bias */
            for (int64_t i = 0; i < rows; i++) {
                float f[64];
                for (int d = 0; d < dim; d++) f[d] = spine_rng_normal(&r);
                sls_encode_row((spine_rowtype)rt, f, dim, data + (size_t)i * rb);
            }
        }
        int64_t hot[800]; /* the hot list repeats some rows and includes the last */
        for (int i = 0; i < 800; i++)
            hot[i] = i == 0 ? rows - 1 : (int64_t)spine_rng_below(&r, 1000);
        int64_t off[65], idx[64 * 30];
        off[0] = 0;
        for (int bag = 0; bag < 64; bag++)
            off[bag + 1] = off[bag] + (int64_t)spine_rng_below(&r, 30);
        for (int64_t p = 0; p < off[64]; p++)
            idx[p] = spine_rng_below(&r, 2) ? (int64_t)spine_rng_below(&r, 1000)
                                            : (int64_t)spine_rng_below(&r, (uint64_t)rows);
        float a[64 * 37], b[64 * 37];
        spine_store *plain, *h;
        assert_int_equal(
            spine_store_mem_create("t", data, rows, dim, (spine_rowtype)rt, &plain, NULL),
            SPINE_OK);
        for (size_t budget = 0; budget <= 1002 * rb; budget += 334 * rb) { /* 0 .. all 1000 */
            assert_int_equal(spine_store_hot_create("t", data, rows, dim, (spine_rowtype)rt, hot,
                                                    800, budget, &h, NULL),
                             SPINE_OK);
            assert_true(spine_store_hot_bytes(h) <= budget);
            for (int pool = 0; pool < 2; pool++) {
                spine_bags ba = {64, off, idx, NULL, (spine_pooling)pool, a, 37};
                spine_bags bb = {64, off, idx, NULL, (spine_pooling)pool, b, 37};
                assert_int_equal(spine_store_lookup(plain, &ba, NULL), SPINE_OK);
                assert_int_equal(spine_store_lookup(h, &bb, NULL), SPINE_OK);
                assert_memory_equal(a, b, sizeof a);
            }
            spine_store_stats st;
            spine_store_stats_get(h, &st);
            assert_true(st.hits <= st.rows_read);
            if (budget >= 1000 * rb) { /* every listed row is hot: hits are exactly countable */
                uint64_t want = 0;
                for (int64_t p = 0; p < off[64]; p++) {
                    bool listed = false;
                    for (int i = 0; i < 800 && !listed; i++) listed = hot[i] == idx[p];
                    want += listed;
                }
                assert_int_equal(st.hits, 2 * want); /* two lookups: sum and mean */
            }
            if (budget > 0) assert_true(st.hits > 0);
            if (budget == 0) assert_int_equal(st.hits, 0);
            if (budget >= 1000 * rb) {
                /* every listed row is hot, so the hot store must not read them from the table:
                 * scribble over them there and the answers must not change */
                uint8_t *saved = malloc((size_t)rows * rb);
                memcpy(saved, data, (size_t)rows * rb);
                for (int i = 0; i < 800; i++) memset(data + (size_t)hot[i] * rb, 0xff, rb);
                spine_bags bb = {64, off, idx, NULL, SPINE_POOL_MEAN, b, 37};
                assert_int_equal(spine_store_lookup(h, &bb, NULL), SPINE_OK);
                assert_memory_equal(a, b, sizeof a); /* a: the plain store's mean, above */
                memcpy(data, saved, (size_t)rows * rb);
                free(saved);
            }
            spine_store_free(h);
        }
        int64_t bad = rows;
        assert_fails_with(spine_store_hot_create("t", data, rows, dim, (spine_rowtype)rt, &bad, 1,
                                                 1 << 20, &h, err),
                          SPINE_ERR_RANGE, "hot row");
        spine_store_free(plain);
        free(data);
    }
}

static uint8_t *random_rows(spine_rowtype rt, int64_t rows, int dim, spine_rng *r) {
    size_t rb = spine_row_bytes(rt, dim);
    uint8_t *data = malloc((size_t)rows * rb);
    float *f = malloc((size_t)dim * sizeof *f);
    for (int64_t i = 0; i < rows; i++) {
        for (int d = 0; d < dim; d++) f[d] = spine_rng_normal(r);
        sls_encode_row(rt, f, dim, data + (size_t)i * rb);
    }
    free(f);
    return data;
}

/* spine_store_lookup_many: bitwise what one spine_store_lookup per table gives, across row
 * types, dims, plain and hot stores, tables with no bags and bags with no rows; every batch is
 * checked before any table is read. */
static void lookup_many_equals_one_by_one(void **state) {
    (void)state;
    enum { N = 7, ROWS = 3000, BAGS = 40 };
    const int dims[N] = {1, 130, 37, 64, 8, 16, 5}; /* 130: a hot table wider than a block */
    spine_rng r;
    spine_rng_seed(&r, 77);
    uint8_t *data[N];
    spine_store *st[N];
    int64_t hot[600];
    for (int i = 0; i < 600; i++) hot[i] = (int64_t)spine_rng_below(&r, ROWS);
    for (int t = 0; t < N; t++) {
        spine_rowtype rt = (spine_rowtype)((t * 3) % 4);
        data[t] = random_rows(rt, ROWS, dims[t], &r);
        if (t % 2)
            assert_int_equal(spine_store_hot_create("t", data[t], ROWS, dims[t], rt, hot, 600,
                                                    300 * spine_row_bytes(rt, dims[t]), &st[t],
                                                    NULL),
                             SPINE_OK);
        else
            assert_int_equal(spine_store_mem_create("t", data[t], ROWS, dims[t], rt, &st[t], NULL),
                             SPINE_OK);
    }
    int64_t off[N][BAGS + 1], idx[N * BAGS * 25];
    int64_t p = 0;
    spine_bags many[N], one[N];
    float *out_many = calloc((size_t)N * BAGS * 130, sizeof(float));
    float *out_one = calloc((size_t)N * BAGS * 130, sizeof(float));
    for (int t = 0; t < N; t++) {
        int nb = t == 2 ? 0 : BAGS; /* table 2: no bags at all */
        off[t][0] = p;
        for (int b = 0; b < nb; b++) {
            int len = t == 4 ? 0 : (int)spine_rng_below(&r, 25); /* table 4: empty bags */
            for (int k = 0; k < len; k++)
                idx[p++] = spine_rng_below(&r, 2) ? hot[spine_rng_below(&r, 600)]
                                                  : (int64_t)spine_rng_below(&r, ROWS);
            off[t][b + 1] = p;
        }
        many[t] = (spine_bags){
            nb, off[t], idx, NULL, (spine_pooling)(t % 2), out_many + (size_t)t * BAGS * 130, 130};
        one[t] = many[t];
        one[t].out = out_one + (size_t)t * BAGS * 130;
    }
    assert_int_equal(spine_store_lookup_many(st, many, N, NULL), SPINE_OK);
    for (int t = 0; t < N; t++)
        assert_int_equal(spine_store_lookup(st[t], &one[t], NULL), SPINE_OK);
    assert_memory_equal(out_many, out_one, (size_t)N * BAGS * 130 * sizeof(float));
    /* and the multi-table kernel alone, portable against AVX2 within float tolerance */
    sls_table tabs[N];
    for (int t = 0; t < N; t++) {
        spine_rowtype rt = (spine_rowtype)((t * 3) % 4);
        tabs[t] = (sls_table){.data = data[t],
                              .rows = ROWS,
                              .row_bytes = spine_row_bytes(rt, dims[t]),
                              .dim = dims[t],
                              .rowtype = rt};
        one[t].out = out_one + (size_t)t * BAGS * 130;
    }
    sls_multi(tabs, many, N, sls_best_isa());
    sls_multi(tabs, one, N, SLS_ISA_SCALAR);
    for (size_t i = 0; i < (size_t)N * BAGS * 130; i++)
        assert_true(fabsf(out_many[i] - out_one[i]) <= 1e-4f * (1.0f + fabsf(out_one[i])));
    /* a bad index in a later table: refused, naming it, before any table is read */
    for (size_t i = 0; i < (size_t)N * BAGS * 130; i++) out_many[i] = 12345.0f;
    int64_t keep = idx[off[5][0]];
    idx[off[5][0]] = ROWS;
    assert_fails_with(spine_store_lookup_many(st, many, N, err), SPINE_ERR_RANGE,
                      "index 3000 at values");
    for (size_t i = 0; i < (size_t)N * BAGS * 130; i++) assert_true(out_many[i] == 12345.0f);
    idx[off[5][0]] = keep;
    assert_int_equal(spine_store_lookup_many(st, many, 0, NULL), SPINE_OK);
    assert_fails_with(spine_store_lookup_many(st, many, -1, err), SPINE_ERR_INVALID, "malformed");
    for (int t = 0; t < N; t++) {
        spine_store_free(st[t]);
        free(data[t]);
    }
    free(out_many);
    free(out_one);
}

int test_group_store(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(out_of_range_index_names_table_and_position),
        cmocka_unit_test(range_check_finds_any_bad_index_on_every_isa),
        cmocka_unit_test(widening_copies_and_checks_every_index_on_every_isa),
        cmocka_unit_test(malformed_batches_are_refused),
        cmocka_unit_test(lookups_pool_rows_and_count),
        cmocka_unit_test(create_refuses_empty_tables),
        cmocka_unit_test(hot_store_returns_exactly_what_the_plain_store_returns),
        cmocka_unit_test(lookup_many_equals_one_by_one),
    };
    return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
