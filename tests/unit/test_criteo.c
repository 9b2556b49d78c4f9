/* test_criteo.c: Criteo TSV lines and the bounded line reader. */
#include "test_util.h"

#include "../../src/io/io.h"

#include <math.h>

static const int64_t rows[26] = {1000, 1000, 7,    1,    1000, 1000, 1000, 1000, 1000,
                                 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000,
                                 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000};

static void line(char *buf, size_t n, bool label, const char *dense_override) {
    size_t o = 0;
    if (label) o += (size_t)snprintf(buf + o, n - o, "1\t");
    for (int i = 0; i < 13; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s\t",
                              i == 1 && dense_override ? dense_override : (i == 3 ? "" : "7"));
    for (int t = 0; t < 26; t++)
        o += (size_t)snprintf(buf + o, n - o, t == 25 ? "%s" : "%s\t", t == 4 ? "" : "0000000a");
}

static void parses_lines_with_and_without_label(void **state) {
    (void)state;
    char buf[1024];
    float dense[13];
    int64_t idx[26];
    criteo_error e;
    for (int label = 0; label < 2; label++) {
        line(buf, sizeof buf, label, "-5");
        assert_int_equal(criteo_parse_line(buf, strlen(buf), 13, 26, rows, dense, idx, &e), 0);
        assert_float_equal(dense[0], (float)log1p(7.0), 0);
        assert_float_equal(dense[1], 0.0f, 0); /* negative -> 0 */
        assert_float_equal(dense[3], 0.0f, 0); /* missing -> 0 */
        assert_int_equal(idx[0], 10);
        assert_int_equal(idx[2], 10 % 7);
        assert_int_equal(idx[3], 0);
        assert_int_equal(idx[4], 0); /* missing -> 0 */
    }
    const char *big = "ffffffffffffffff";
    line(buf, sizeof buf, true, NULL);
    char *c = strstr(buf, "0000000a");
    char buf2[1100];
    snprintf(buf2, sizeof buf2, "%.*s%s%s", (int)(c - buf), buf, big, c + 8);
    assert_int_equal(criteo_parse_line(buf2, strlen(buf2), 13, 26, rows, dense, idx, &e), 0);
    assert_int_equal(idx[0], (int64_t)(UINT64_MAX % 1000));
}

static void reports_column_of_bad_values(void **state) {
    (void)state;
    char buf[1024];
    float dense[13];
    int64_t idx[26];
    criteo_error e;
    line(buf, sizeof buf, true, "12x");
    assert_int_equal(criteo_parse_line(buf, strlen(buf), 13, 26, rows, dense, idx, &e), -1);
    assert_int_equal(e.field, 3);
    assert_int_equal(e.column, 7); /* "1\t7\t12x": the x is the 7th byte */
    assert_non_null(strstr(e.msg, "integer"));
    line(buf, sizeof buf, false, NULL);
    char *c = strstr(buf, "0000000a");
    c[3] = 'g';
    assert_int_equal(criteo_parse_line(buf, strlen(buf), 13, 26, rows, dense, idx, &e), -1);
    assert_int_equal(e.field, 14);
    assert_int_equal(e.column, (int)(c - buf) + 4);
    assert_non_null(strstr(e.msg, "hexadecimal"));
    assert_int_equal(criteo_parse_line("1\t2", 3, 13, 26, rows, dense, idx, &e), -1);
    assert_non_null(strstr(e.msg, "2 fields, expected 39"));
    assert_int_equal(criteo_parse_line("", 0, 13, 26, rows, dense, idx, &e), -1);
    line(buf, sizeof buf, true, "99999999999999999999999");
    assert_int_equal(criteo_parse_line(buf, strlen(buf), 13, 26, rows, dense, idx, &e), -1);
    assert_non_null(strstr(e.msg, "too large"));
    line(buf, sizeof buf, true, "-");
    assert_int_equal(criteo_parse_line(buf, strlen(buf), 13, 26, rows, dense, idx, &e), -1);
}

static void line_reader_skips_overlong_lines(void **state) {
    (void)state;
    FILE *f = tmpfile();
    fputs("first\r\n", f);
    for (size_t i = 0; i < LINE_MAX_BYTES + 100; i++) fputc('x', f);
    fputs("\nthird\n\nfifth", f);
    rewind(f);
    line_reader r;
    assert_int_equal(line_reader_init(&r, f, NULL), SPINE_OK);
    const char *l;
    size_t n;
    bool too_long;
    assert_int_equal(line_reader_next(&r, &l, &n, &too_long), 1);
    assert_false(too_long);
    assert_int_equal(n, 5); /* \r removed */
    assert_memory_equal(l, "first", 5);
    assert_int_equal(line_reader_next(&r, &l, &n, &too_long), 1);
    assert_true(too_long);
    assert_int_equal(r.lineno, 2);
    assert_int_equal(line_reader_next(&r, &l, &n, &too_long), 1);
    assert_memory_equal(l, "third", 5);
    assert_int_equal(r.lineno, 3);
    assert_int_equal(line_reader_next(&r, &l, &n, &too_long), 1);
    assert_int_equal(n, 0);
    assert_int_equal(line_reader_next(&r, &l, &n, &too_long), 1);
    assert_memory_equal(l, "fifth", 5); /* no final newline */
    assert_int_equal(line_reader_next(&r, &l, &n, &too_long), 0);
    line_reader_free(&r);
    fclose(f);
}

int test_group_criteo(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_lines_with_and_without_label),
        cmocka_unit_test(reports_column_of_bad_values),
        cmocka_unit_test(line_reader_skips_overlong_lines),
    };
    return cmocka_run_group_tests_name("criteo", tests, NULL, NULL);
}
