/* test_config.c: config.json parsing: a valid file, and every refusal. */
#include "test_util.h"

#include "../../src/model/dlrm.h"

static const char *valid =
    "{\"model_type\":\"dlrm\",\"name\":\"m\",\"num_dense_features\":3,\"embedding_dim\":4,"
    "\"embedding_dtype\":\"int8\",\"pooling\":\"mean\",\"bottom_mlp\":[8,4],\"top_mlp\":[5,1],"
    "\"interaction\":\"dot\",\"lookups_per_table\":7,\"metadata\":{\"any\":[1]},"
    "\"tables\":[{\"rows\":10},{\"rows\":20,\"dtype\":\"f16\",\"pooling\":\"sum\",\"name\":\"ads\"}"
    "]}";

static spine_status parse(const char *s, dlrm_config *c, spine_error *err) {
    return dlrm_config_parse(s, strlen(s), c, err);
}

static void parses_a_valid_config(void **state) {
    (void)state;
    dlrm_config c;
    assert_int_equal(parse(valid, &c, NULL), SPINE_OK);
    assert_string_equal(c.name, "m");
    assert_int_equal(c.num_tables, 2);
    assert_int_equal(c.tables[0].rowtype, SPINE_ROW_INT8);
    assert_int_equal(c.tables[0].pooling, SPINE_POOL_MEAN);
    assert_int_equal(c.tables[1].rowtype, SPINE_ROW_F16);
    assert_int_equal(c.tables[1].pooling, SPINE_POOL_SUM);
    assert_string_equal(c.tables[1].name, "ads");
    assert_int_equal(c.interaction_dim, 4 + 3); /* 3 features -> 3 pairs */
    assert_int_equal(c.lookups_per_table, 7);
    assert_int_equal(c.emb_params, 120);
    assert_int_equal(c.emb_bytes, 10 * 12 + 20 * 8);
    /* writing and reading back gives the same configuration */
    char *json = dlrm_config_to_json(&c);
    dlrm_config c2;
    assert_int_equal(parse(json, &c2, NULL), SPINE_OK);
    assert_int_equal(c2.interaction_dim, c.interaction_dim);
    assert_int_equal(c2.tables[1].rowtype, SPINE_ROW_F16);
    assert_int_equal(c2.tables[0].pooling, SPINE_POOL_MEAN);
    free(json);
    dlrm_config_free(&c);
    dlrm_config_free(&c2);
}

static void refuses_bad_configs(void **state) {
    (void)state;
    struct {
        const char *from, *to, *phrase;
    } edits[] = {
        {"\"model_type\":\"dlrm\"", "\"model_type\":\"bert\"", "model_type"},
        {"\"name\":\"m\",", "", NULL}, /* a missing name is fine */
        {"\"num_dense_features\":3", "\"num_dense_features\":0", "num_dense_features"},
        {"\"num_dense_features\":3", "\"num_dense_features\":3.5", "integer"},
        {"\"embedding_dim\":4", "\"embedding_dim\":99999", "embedding_dim"},
        {"\"bottom_mlp\":[8,4]", "\"bottom_mlp\":[8,5]", "embedding_dim"},
        {"\"bottom_mlp\":[8,4]", "\"bottom_mlp\":[]", "bottom_mlp"},
        {"\"top_mlp\":[5,1]", "\"top_mlp\":[5,2]", "1 output"},
        {"\"top_mlp\":[5,1]", "\"top_mlp\":[0,1]", "top_mlp"},
        {"\"embedding_dtype\":\"int8\"", "\"embedding_dtype\":\"int3\"", "int4"},
        {"\"pooling\":\"mean\"", "\"pooling\":\"max\"", "mean"},
        {"\"interaction\":\"dot\"", "\"interaction\":\"dcn\"", "cat"},
        {"{\"rows\":10}", "{\"rows\":0}", "rows"},
        {"{\"rows\":10}", "{\"rows\":1099511627777}", "rows"},
        {"{\"rows\":10}", "{\"rowz\":10}", "unknown key"},
        {"{\"rows\":10}", "{}", "missing \"rows\""},
        {"\"name\":\"ads\"", "\"name\":\"emb_l.0\"", "two tables"},
        {"\"lookups_per_table\":7", "\"lookups_per_tabel\":7", "unknown key"},
        {"\"metadata\":{\"any\":[1]}", "\"metadata\":3", "metadata"},
        {"\"tables\":[", "\"tablez\":[", "unknown key"},
    };
    for (size_t i = 0; i < SPINE_ARRAY_LEN(edits); i++) {
        char buf[2048];
        const char *at = strstr(valid, edits[i].from);
        assert_non_null(at);
        snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - valid), valid, edits[i].to,
                 at + strlen(edits[i].from));
        dlrm_config c;
        spine_error e = {0};
        spine_status st = parse(buf, &c, &e);
        if (!edits[i].phrase) {
            assert_int_equal(st, SPINE_OK);
            dlrm_config_free(&c);
            continue;
        }
        if (st == SPINE_OK || !strstr(e.msg, edits[i].phrase))
            fail_msg("edit %zu: status %d '%s', wanted '%s'", i, st, e.msg, edits[i].phrase);
    }
    dlrm_config c;
    assert_fails_with(parse("[]", &c, err), SPINE_ERR_FORMAT, "object");
    assert_fails_with(parse("{\"model_type\":\"dlrm\"}", &c, err), SPINE_ERR_FORMAT, "missing");
    assert_fails_with(parse("{", &c, err), SPINE_ERR_FORMAT, "json");
}

static void presets_make_valid_configs(void **state) {
    (void)state;
    for (const char *const *p = dlrm_preset_names; *p; p++) {
        dlrm_gen_opts o = {.preset = *p, .rows_scale = 0.001};
        dlrm_config c;
        assert_int_equal(dlrm_preset_config(&o, &c, NULL), SPINE_OK);
        assert_true(c.num_tables > 0);
        dlrm_config_free(&c);
    }
    dlrm_gen_opts o = {.preset = "rmc2"};
    dlrm_config c;
    assert_int_equal(dlrm_preset_config(&o, &c, NULL), SPINE_OK);
    assert_int_equal(c.num_tables, 32);
    assert_int_equal(c.tables[31].rows, 500000);
    assert_int_equal(c.emb_bytes, 32ull * 500000 * 64 * 4);
    dlrm_config_free(&c);
    o.preset = "dlrm-kaggle";
    assert_int_equal(dlrm_preset_config(&o, &c, NULL), SPINE_OK);
    assert_int_equal(c.tables[2].rows, 10131227);
    assert_int_equal(c.interaction_dim, 16 + 27 * 26 / 2);
    dlrm_config_free(&c);
    o.preset = "nope";
    assert_fails_with(dlrm_preset_config(&o, &c, err), SPINE_ERR_INVALID, "unknown preset");
}

int test_group_config(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_a_valid_config),
        cmocka_unit_test(refuses_bad_configs),
        cmocka_unit_test(presets_make_valid_configs),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
