/* test_dlrm.c: the DLRM forward pass by hand, chunked and threaded runs, sharing one model
 * between threads, batch validation, model-file refusals, deterministic generation. */
#include "test_util.h"

#include "../../src/model/dlrm.h"

#include <math.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

static void add_f32(spine_tensors *ts, const char *name, int ndim, int64_t d0, int64_t d1,
                    const float *v) {
    int64_t sh[2] = {d0, d1};
    size_t n = (size_t)d0 * (size_t)(ndim == 2 ? d1 : 1);
    float *p = spine_alloc_aligned(n * 4);
    memcpy(p, v, n * 4);
    assert_non_null(st_add_owned(ts, name, SPINE_DT_F32, ndim, sh, p, n * 4));
}

/* dense 1 -> bottom [2] -> dot with one table (3 x 2) -> top [1] */
static spine_model *micro_model(void) {
    static const char *cfg =
        "{\"model_type\":\"dlrm\",\"num_dense_features\":1,\"embedding_dim\":2,"
        "\"bottom_mlp\":[2],\"top_mlp\":[1],\"tables\":[{\"rows\":3}]}";
    dlrm_config c;
    assert_int_equal(dlrm_config_parse(cfg, strlen(cfg), &c, NULL), SPINE_OK);
    assert_int_equal(c.interaction_dim, 3);
    spine_tensors ts = {0};
    add_f32(&ts, "bot_l.0.weight", 2, 2, 1, (float[]){1.0f, -2.0f});
    add_f32(&ts, "bot_l.0.bias", 1, 2, 0, (float[]){0.5f, 0.25f});
    add_f32(&ts, "emb_l.0.weight", 2, 3, 2, (float[]){1, 2, 3, 4, 5, 6});
    add_f32(&ts, "top_l.0.weight", 2, 1, 3, (float[]){0.1f, 0.2f, 0.3f});
    add_f32(&ts, "top_l.0.bias", 1, 1, 0, (float[]){-1.0f});
    spine_model *m;
    assert_int_equal(dlrm_model_create(&c, &ts, SPINE_PLACE_AUTO, &m, NULL), SPINE_OK);
    return m;
}

static void forward_pass_matches_hand_computation(void **state) {
    (void)state;
    spine_model *m = micro_model();
    spine_ctx *ctx;
    assert_int_equal(spine_ctx_create(m, 4, NULL, &ctx, NULL), SPINE_OK);
    float dense[2] = {2.0f, -1.0f};
    int32_t lengths[2] = {2, 0}; /* sample 0: rows 0 and 2; sample 1: empty bag */
    int64_t values[2] = {0, 2};
    spine_batch b = {2, dense, lengths, values, NULL};
    float out[2];
    assert_int_equal(spine_ctx_run(ctx, &b, out, SPINE_RUN_LOGITS, NULL), SPINE_OK);
    /* sample 0: x = relu([2*1+.5, 2*-2+.25]) = [2.5, 0]; e = [1+5, 2+6] = [6, 8];
     * dot(e, x) = 15; R = [2.5, 0, 15]; logit = .25 + 0 + 4.5 - 1 = 3.75 */
    assert_float_equal(out[0], 3.75f, 1e-6f);
    /* sample 1: x = relu([-.5, 2.25]) = [0, 2.25]; e = 0; R = [0, 2.25, 0]; logit = -.55 */
    assert_float_equal(out[1], -0.55f, 1e-6f);
    assert_int_equal(spine_ctx_run(ctx, &b, out, 0, NULL), SPINE_OK);
    assert_float_equal(out[0], 1.0f / (1.0f + expf(-3.75f)), 1e-7f);
    /* weighted: w = [2, 0.5] -> e = [2*1 + .5*5, 2*2 + .5*6] = [4.5, 7]; dot = 11.25 */
    float w[2] = {2.0f, 0.5f};
    b.weights = w;
    assert_int_equal(spine_ctx_run(ctx, &b, out, SPINE_RUN_LOGITS, NULL), SPINE_OK);
    assert_float_equal(out[0], 0.25f + 0.3f * 11.25f - 1.0f, 1e-6f);
    spine_ctx_free(ctx);
    spine_model_free(m);
}

static spine_model *gen_model(const char *preset, double scale, int rowtype) {
    dlrm_gen_opts o = {.preset = preset, .rows_scale = scale, .seed = 3};
    if (rowtype >= 0) {
        o.has_rowtype = 1;
        o.rowtype = (spine_rowtype)rowtype;
    }
    spine_model *m;
    assert_int_equal(dlrm_gen_model(&o, &m, NULL), SPINE_OK);
    return m;
}

static void run_model(spine_model *m, int max_batch, int threads, spine_schedule sched,
                      const dlrm_inputs *in, float *out) {
    spine_pool *pool = NULL;
    if (threads > 1) assert_int_equal(spine_pool_create(threads, &pool, NULL), SPINE_OK);
    spine_ctx *ctx;
    assert_int_equal(spine_ctx_create(m, max_batch, pool, &ctx, NULL), SPINE_OK);
    spine_ctx_set_schedule(ctx, sched);
    assert_int_equal(spine_ctx_run(ctx, &in->batch, out, SPINE_RUN_LOGITS, NULL), SPINE_OK);
    spine_ctx_free(ctx);
    spine_pool_free(pool);
}

static void chunked_and_threaded_runs_agree(void **state) {
    (void)state;
    for (int rt = 0; rt < 4; rt++) {
        spine_model *m = gen_model("rmc2", 0.002, rt);
        spine_rng r;
        spine_rng_seed(&r, 11);
        dlrm_inputs in;
        assert_int_equal(
            dlrm_inputs_random(spine_model_describe(m), 150, 20, rt == 0, NULL, &r, &in, NULL),
            SPINE_OK);
        float a[150], b[150], c[150], e[150];
        run_model(m, 256, 1, SPINE_SCHED_TABLE, &in, a);
        run_model(m, 7, 1, SPINE_SCHED_TABLE, &in, b);    /* runs of 7 */
        run_model(m, 100, 3, SPINE_SCHED_TABLE, &in, c);  /* three threads, runs of 100 */
        run_model(m, 150, 2, SPINE_SCHED_SAMPLE, &in, e); /* the other order */
        for (int i = 0; i < 150; i++) {
            assert_true(isfinite(a[i]));
            assert_float_equal(a[i], b[i], 1e-5f * (1 + fabsf(a[i])));
            assert_float_equal(a[i], c[i], 1e-5f * (1 + fabsf(a[i])));
            assert_float_equal(a[i], e[i], 1e-5f * (1 + fabsf(a[i])));
        }
        dlrm_inputs_free(&in);
        spine_model_free(m);
    }
}

typedef struct share_arg {
    spine_model *m;
    const dlrm_inputs *in;
    float *out;
} share_arg;

static void *share_thread(void *p) {
    share_arg *a = p;
    spine_ctx *ctx;
    if (spine_ctx_create(a->m, 32, NULL, &ctx, NULL)) return (void *)1;
    for (int rep = 0; rep < 20; rep++)
        if (spine_ctx_run(ctx, &a->in->batch, a->out, 0, NULL)) return (void *)1;
    spine_ctx_free(ctx);
    return NULL;
}

/* Zipf indices limited to a rank range: every index is the row of a rank in range, every rank
 * in a narrow range turns up, the hottest most often; a range past the rows, or one holding
 * almost none of the mass, is an error rather than a hang. */
static void zipf_rank_ranges_hold(void **state) {
    (void)state;
    enum { ROWS = 1000 };
    spine_table_desc tab = {.rows = ROWS};
    spine_model_desc d = {.num_dense = 1, .emb_dim = 4, .num_tables = 1, .tables = &tab};
    dlrm_index_dist dist = {.alpha = 1.0, .seed = 7, .rank_lo = 10, .rank_hi = 20};
    dlrm_perm perm;
    dlrm_perm_init(&dist, 0, ROWS, &perm);
    int rank_of[ROWS], seen[ROWS] = {0};
    for (int k = 0; k < ROWS; k++) rank_of[dlrm_perm_row(&perm, (uint64_t)k)] = k;
    spine_rng r;
    spine_rng_seed(&r, 3);
    dlrm_inputs in;
    assert_int_equal(dlrm_inputs_random(&d, 200, 10, false, &dist, &r, &in, NULL), SPINE_OK);
    for (int64_t i = 0; i < in.nvalues; i++) {
        assert_true(in.values[i] >= 0 && in.values[i] < ROWS);
        int k = rank_of[in.values[i]];
        assert_true(k >= 10 && k < 20);
        seen[k]++;
    }
    for (int k = 10; k < 20; k++) assert_true(seen[k] > 0);
    assert_true(seen[10] > seen[19]); /* 1.9x as likely */
    dlrm_inputs_free(&in);
    dist.rank_lo = 500, dist.rank_hi = 0; /* 0: up to the table's rows (9% of the mass) */
    assert_int_equal(dlrm_inputs_random(&d, 200, 10, false, &dist, &r, &in, NULL), SPINE_OK);
    for (int64_t i = 0; i < in.nvalues; i++) assert_true(rank_of[in.values[i]] >= 500);
    dlrm_inputs_free(&in);
    dist.rank_lo = 1000, dist.rank_hi = 2000;
    assert_int_equal(dlrm_inputs_random(&d, 10, 10, false, &dist, &r, &in, NULL),
                     SPINE_ERR_INVALID);
    dist.alpha = 5, dist.rank_lo = 999, dist.rank_hi = 1000; /* mass ~ 1e-15 */
    assert_int_equal(dlrm_inputs_random(&d, 10, 10, false, &dist, &r, &in, NULL),
                     SPINE_ERR_INVALID);
    assert_null(in.values);
}

static void one_model_serves_many_threads(void **state) {
    (void)state;
    spine_model *m = gen_model("tiny", 1, -1);
    spine_rng r;
    spine_rng_seed(&r, 12);
    dlrm_inputs in;
    assert_int_equal(
        dlrm_inputs_random(spine_model_describe(m), 100, 3, false, NULL, &r, &in, NULL), SPINE_OK);
    float ref[100], outs[4][100];
    spine_ctx *ctx;
    assert_int_equal(spine_ctx_create(m, 32, NULL, &ctx, NULL), SPINE_OK);
    assert_int_equal(spine_ctx_run(ctx, &in.batch, ref, 0, NULL), SPINE_OK);
    spine_ctx_free(ctx);
    pthread_t th[4];
    share_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (share_arg){m, &in, outs[i]};
        pthread_create(&th[i], NULL, share_thread, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        void *rv;
        pthread_join(th[i], &rv);
        assert_null(rv);
        assert_memory_equal(outs[i], ref, sizeof ref);
    }
    dlrm_inputs_free(&in);
    spine_model_free(m);
}

static void batches_are_validated(void **state) {
    (void)state;
    spine_model *m = micro_model();
    float dense[2] = {0};
    int32_t lengths[2] = {1, 1};
    int64_t values[2] = {0, 3};
    spine_batch b = {2, dense, lengths, values, NULL};
    assert_int_equal(spine_batch_validate(m, &b, 2, NULL), SPINE_OK);
    assert_fails_with(spine_batch_validate(m, &b, 3, err), SPINE_ERR_INVALID, "sum to 2 but 3");
    lengths[1] = -1;
    assert_fails_with(spine_batch_validate(m, &b, 0, err), SPINE_ERR_INVALID, "negative");
    lengths[1] = 1;
    spine_ctx *ctx;
    float out[2];
    assert_int_equal(spine_ctx_create(m, 2, NULL, &ctx, NULL), SPINE_OK);
    assert_fails_with(spine_ctx_run(ctx, &b, out, 0, err), SPINE_ERR_RANGE,
                      "table 'emb_l.0': index 3 at values[1] is outside [0, 3)");
    lengths[0] = -5;
    assert_fails_with(spine_ctx_run(ctx, &b, out, 0, err), SPINE_ERR_INVALID, "negative");
    spine_ctx_free(ctx);
    spine_model_free(m);
    /* weights need sum pooling */
    static const char *cfg =
        "{\"model_type\":\"dlrm\",\"num_dense_features\":1,\"embedding_dim\":2,"
        "\"pooling\":\"mean\",\"bottom_mlp\":[2],\"top_mlp\":[1],\"tables\":[{\"rows\":3}]}";
    dlrm_config c;
    assert_int_equal(dlrm_config_parse(cfg, strlen(cfg), &c, NULL), SPINE_OK);
    dlrm_gen_opts o = {.seed = 1};
    spine_tensors ts;
    assert_int_equal(dlrm_gen_tensors(&c, &o, &ts, NULL), SPINE_OK);
    assert_int_equal(dlrm_model_create(&c, &ts, SPINE_PLACE_AUTO, &m, NULL), SPINE_OK);
    float w[2] = {1, 1};
    values[1] = 1;
    lengths[0] = 1;
    b.weights = w;
    assert_fails_with(spine_batch_validate(m, &b, 2, err), SPINE_ERR_INVALID, "mean pooling");
    spine_model_free(m);
}

/* write the tiny preset, then damage one thing at a time */
static void model_files_are_checked(void **state) {
    (void)state;
    char dir[] = "/tmp/spine_model_XXXXXX";
    assert_non_null(mkdtemp(dir));
    dlrm_gen_opts o = {.preset = "tiny", .rows_scale = 1, .seed = 1};
    assert_int_equal(dlrm_gen_write(&o, dir, NULL), SPINE_OK);
    spine_model *m;
    assert_int_equal(spine_model_load(dir, &m, NULL), SPINE_OK);
    spine_model_free(m);
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    spine_tensors good;
    assert_int_equal(st_open(path, &good, NULL), SPINE_OK);
    struct {
        const char *what, *name;
        int action; /* 0 drop, 1 rename, 2 reshape, 3 retype, 4 add */
        const char *phrase;
    } cases[] = {
        {"missing table", "emb_l.3.weight", 0, "missing tensor 'emb_l.3.weight'"},
        {"renamed layer", "top_l.2.bias", 1, "missing tensor 'top_l.2.bias'"},
        {"wrong shape", "bot_l.0.weight", 2, "has shape"},
        {"wrong dtype", "emb_l.0.weight", 3, "expected F32"},
        {"extra tensor", "top_l.0.bias", 4, "unexpected tensor 'extra.0.bias'"},
    };
    for (size_t k = 0; k < SPINE_ARRAY_LEN(cases); k++) {
        spine_tensors bad = {0};
        for (size_t i = 0; i < good.n; i++) {
            const spine_tensor *t = &good.t[i];
            bool hit = strcmp(t->name, cases[k].name) == 0;
            if (hit && cases[k].action == 0) continue;
            void *copy = spine_alloc_aligned(t->nbytes ? t->nbytes : 1);
            memcpy(copy, t->data, t->nbytes);
            spine_tensor *n =
                st_add_owned(&bad, hit && cases[k].action == 1 ? "top_l.9.bias" : t->name, t->dtype,
                             t->ndim, t->shape, copy, t->nbytes);
            if (hit && cases[k].action == 2) {
                n->shape[0] = t->shape[1];
                n->shape[1] = t->shape[0];
            }
            if (hit && cases[k].action == 3) {
                n->dtype = SPINE_DT_I32;
            }
            if (hit && cases[k].action == 4) {
                void *c2 = spine_alloc_aligned(t->nbytes);
                memcpy(c2, t->data, t->nbytes);
                st_add_owned(&bad, "extra.0.bias", t->dtype, t->ndim, t->shape, c2, t->nbytes);
            }
        }
        assert_int_equal(st_write(path, &bad, NULL, NULL, NULL, NULL), SPINE_OK);
        st_free(&bad);
        spine_error e = {0};
        if (spine_model_load(dir, &m, &e) == SPINE_OK || !strstr(e.msg, cases[k].phrase))
            fail_msg("%s: '%s', wanted '%s'", cases[k].what, e.msg, cases[k].phrase);
    }
    st_free(&good);
    /* a config that disagrees with the weights */
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *cfg;
    size_t len;
    assert_int_equal(spine_read_file(path, 1 << 20, &cfg, &len, NULL), SPINE_OK);
    assert_int_equal(spine_write_file(path, "{\"model_type\":\"dlrm\"", 20, NULL), SPINE_OK);
    assert_fails_with(spine_model_load(dir, &m, err), SPINE_ERR_FORMAT, "config.json");
    free(cfg);
    snprintf(path, sizeof path, "rm -rf '%s'", dir);
    assert_int_equal(system(path), 0);
}

static void generation_is_deterministic_across_threads(void **state) {
    (void)state;
    dlrm_gen_opts o = {.preset = "rmc1", .rows_scale = 0.01, .seed = 77};
    dlrm_config c;
    assert_int_equal(dlrm_preset_config(&o, &c, NULL), SPINE_OK);
    spine_tensors a, b;
    assert_int_equal(dlrm_gen_tensors(&c, &o, &a, NULL), SPINE_OK);
    spine_pool *pool;
    assert_int_equal(spine_pool_create(3, &pool, NULL), SPINE_OK);
    o.pool = pool;
    assert_int_equal(dlrm_gen_tensors(&c, &o, &b, NULL), SPINE_OK);
    assert_int_equal(a.n, b.n);
    for (size_t i = 0; i < a.n; i++) {
        assert_string_equal(a.t[i].name, b.t[i].name);
        assert_int_equal(a.t[i].nbytes, b.t[i].nbytes);
        assert_memory_equal(a.t[i].data, b.t[i].data, a.t[i].nbytes);
    }
    st_free(&b);
    o.seed = 78;
    assert_int_equal(dlrm_gen_tensors(&c, &o, &b, NULL), SPINE_OK);
    assert_true(memcmp(a.t[a.n - 1].data, b.t[b.n - 1].data, a.t[a.n - 1].nbytes) != 0);
    st_free(&a);
    st_free(&b);
    spine_pool_free(pool);
    dlrm_config_free(&c);
}

int test_group_dlrm(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(forward_pass_matches_hand_computation),
        cmocka_unit_test(chunked_and_threaded_runs_agree),
        cmocka_unit_test(one_model_serves_many_threads),
        cmocka_unit_test(zipf_rank_ranges_hold),
        cmocka_unit_test(batches_are_validated),
        cmocka_unit_test(model_files_are_checked),
        cmocka_unit_test(generation_is_deterministic_across_threads),
    };
    return cmocka_run_group_tests_name("dlrm", tests, NULL, NULL);
}
