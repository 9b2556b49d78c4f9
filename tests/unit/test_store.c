/* test_store.c: the store interface: bounds checks name table and position, malformed CSR
 * batches are refused, statistics count. */
#include "test_util.h"

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

int test_group_store(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(out_of_range_index_names_table_and_position),
        cmocka_unit_test(malformed_batches_are_refused),
        cmocka_unit_test(lookups_pool_rows_and_count),
        cmocka_unit_test(create_refuses_empty_tables),
    };
    return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
