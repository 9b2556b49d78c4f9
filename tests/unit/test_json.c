/* test_json.c: the strict JSON parser. */
#include "test_util.h"

#include "../../src/base/json.h"

static spine_status parse(json_doc *d, const char *s, spine_error *err) {
    return json_parse(d, s, strlen(s), err);
}

static void parses_nested_document(void **state) {
    (void)state;
    json_doc d;
    const char *s =
        " {\"a\": [1, -2.5e3, true, false, null], \"b\": {\"c\": \"x\\ny\"}, \"e\": []} ";
    assert_int_equal(parse(&d, s, NULL), SPINE_OK);
    const json_node *a = json_obj_get(&d, json_root(&d), "a");
    assert_non_null(a);
    assert_int_equal(a->type, JSON_ARRAY);
    assert_int_equal(a->count, 5);
    const json_node *e = json_child(&d, a);
    assert_int_equal(e->type, JSON_NUMBER);
    assert_true(e->num == 1.0);
    e = json_next(&d, e);
    assert_true(e->num == -2500.0);
    assert_int_equal(json_next(&d, e)->type, JSON_TRUE);
    const json_node *c = json_obj_get(&d, json_obj_get(&d, json_root(&d), "b"), "c");
    assert_string_equal(json_str(&d, c), "x\ny");
    assert_int_equal(json_obj_get(&d, json_root(&d), "e")->count, 0);
    assert_null(json_obj_get(&d, json_root(&d), "missing"));
    json_free(&d);
}

static void reads_64_bit_integers_exactly(void **state) {
    (void)state;
    json_doc d;
    assert_int_equal(
        parse(&d, "[18446744073709551615, -9223372036854775808, 9007199254740993]", NULL),
        SPINE_OK);
    const json_node *n = json_child(&d, json_root(&d));
    uint64_t u;
    int64_t i;
    assert_true(json_get_u64(&d, n, &u));
    assert_true(u == UINT64_MAX);
    assert_false(json_get_i64(&d, n, &i)); /* too large for int64 */
    n = json_next(&d, n);
    assert_true(json_get_i64(&d, n, &i));
    assert_true(i == INT64_MIN);
    assert_false(json_get_u64(&d, n, &u)); /* negative */
    n = json_next(&d, n);
    assert_true(json_get_i64(&d, n, &i));
    assert_true(i == 9007199254740993LL); /* not representable as a double */
    json_free(&d);
    assert_int_equal(parse(&d, "[1.0, 1e3, 18446744073709551616]", NULL), SPINE_OK);
    for (n = json_child(&d, json_root(&d)); n; n = json_next(&d, n))
        assert_false(json_get_u64(&d, n, &u));
    json_free(&d);
}

static void decodes_unicode_escapes(void **state) {
    (void)state;
    json_doc d;
    assert_int_equal(parse(&d, "\"\\u00e9\\ud83d\\ude00\xc3\xa9\"", NULL), SPINE_OK);
    assert_string_equal(json_str(&d, json_root(&d)), "\xc3\xa9\xf0\x9f\x98\x80\xc3\xa9");
    json_free(&d);
}

static void rejects_malformed_documents(void **state) {
    (void)state;
    const char *bad[] = {
        "",
        "   ",
        "{",
        "[1,]",
        "{\"a\":1,}",
        "[1 2]",
        "{\"a\" 1}",
        "{1:2}",
        "tru",
        "nul",
        "01",
        "1.",
        "-",
        "1e",
        ".5",
        "+1",
        "\"abc",
        "\"\\x\"",
        "\"\\u12\"",
        "\"\\ud800\"",
        "\"\\udc00\"",
        "\"\\ud800\\u0041\"",
        "\"a\x01\"",
        "\"\xff\"",
        "\"\xc0\x80\"",
        "\"\xed\xa0\x80\"",
        "\"\xf4\x90\x80\x80\"",
        "\"\\u0000\"",
        "[1] [2]",
        "{} x",
        "[\"a\"}",
        "NaN",
        "Infinity",
        "[1e5000x]",
    };
    for (size_t i = 0; i < SPINE_ARRAY_LEN(bad); i++) {
        json_doc d;
        spine_error e = {0};
        if (parse(&d, bad[i], &e) == SPINE_OK) fail_msg("accepted '%s'", bad[i]);
        assert_non_null(strstr(e.msg, "json:"));
    }
}

static void caps_nesting_depth(void **state) {
    (void)state;
    char deep[400];
    memset(deep, '[', 200);
    memset(deep + 200, ']', 200);
    json_doc d;
    assert_fails_with(json_parse(&d, deep, sizeof deep, err), SPINE_ERR_FORMAT, "too deep");
    assert_int_equal(json_parse(&d, deep + 200 - JSON_MAX_DEPTH, 2 * JSON_MAX_DEPTH, NULL),
                     SPINE_OK);
    json_free(&d);
}

static void parses_without_nul_terminator(void **state) {
    (void)state;
    char buf[3] = {'1', '2', '3'}; /* no NUL after it */
    json_doc d;
    assert_int_equal(json_parse(&d, buf, 2, NULL), SPINE_OK);
    assert_true(json_root(&d)->num == 12.0);
    json_free(&d);
}

static void writes_escaped_strings(void **state) {
    (void)state;
    spine_buf b = {0};
    json_write_string(&b, "a\"b\\c\n\x01", 7);
    assert_string_equal(b.data, "\"a\\\"b\\\\c\\u000a\\u0001\"");
    json_doc d;
    assert_int_equal(json_parse(&d, b.data, b.len, NULL), SPINE_OK);
    assert_memory_equal(json_str(&d, json_root(&d)), "a\"b\\c\n\x01", 7);
    json_free(&d);
    spine_buf_free(&b);
}

int test_group_json(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_nested_document),  cmocka_unit_test(reads_64_bit_integers_exactly),
        cmocka_unit_test(decodes_unicode_escapes), cmocka_unit_test(rejects_malformed_documents),
        cmocka_unit_test(caps_nesting_depth),      cmocka_unit_test(parses_without_nul_terminator),
        cmocka_unit_test(writes_escaped_strings),
    };
    return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
