/* test_moe.c: the MoE side: weight-product kernels against the scalar reference (every path,
 * F32 and BF16, odd shapes, SwiGLU; AMX within an F32 bound), config.json parsing and refusals, the
 * token-file parser, gating invariants on a generated model (dynamic = static with ample capacity;
 * capacity drops counted; bad token ids and over-long sequences refused). */
#include "test_util.h"

#include "../../src/kernels/kernels.h"
#include "../../src/moe/moe.h"

#include <math.h>

static float *rnd(size_t n, uint64_t seed) {
    spine_rng r;
    spine_rng_seed(&r, seed);
    float *p = spine_alloc_aligned(n * sizeof(float) + 64);
    for (size_t i = 0; i < n; i++) p[i] = spine_rng_uniform(&r) * 2.0f - 1.0f;
    return p;
}

/* a copy of w (F32 or BF16, n x k) laid out as panels when `panels` */
static mm_weight copy_weight(const mm_weight *w, bool panels) {
    size_t bytes = (size_t)w->n * w->k * spine_dtype_size(w->dt);
    void *d = spine_alloc_aligned(bytes + 64);
    memcpy(d, w->data, bytes);
    mm_weight c = {d, w->dt, w->n, w->k, false};
    if (panels) assert_int_equal(mm_pack(&c, NULL), SPINE_OK);
    return c;
}

/* Every path (ISA x layout) against the scalar reference on row-major weights: panels are
 * summed in the reference's order, so they match it bitwise; the AVX2 and BLAS paths within
 * float tolerance. */
static void products_match_the_scalar_reference(void **state) {
    (void)state;
    /* 33 and 18: a rest of 1 or 2 rows goes with the last whole tile as 5 + 4 or 5 + 5 rows */
    const int ms[] = {1, 2, 3, 4, 5, 8, 9, 13, 18, 33, 70};
    /* 300 on 2 threads, small m: heads of 112 rows (decode runs four groups at once, then three
     * alone), tails of 32, 32 and 12 (a short group); 19 and 37: no head, tails only */
    const int ns[] = {1, 5, 16, 19, 37, 300};
    const int ks[] = {1, 7, 16, 33, 100, 300};
    spine_pool *pool = NULL;
    assert_int_equal(spine_pool_create(2, &pool, NULL), SPINE_OK);
    mm_ctx c;
    assert_int_equal(mm_ctx_init(&c, pool, 300, NULL), SPINE_OK);
    mm_set_amx(0); /* AMX sums in another order (amx_products_within_f32_rounding) */
    for (int isa = 0; isa <= SLS_ISA_AVX512; isa++)
        for (int panels = 0; panels < 2; panels++)
            for (int dt = 0; dt < 2; dt++)
                for (size_t b = 0; b < SPINE_ARRAY_LEN(ns); b++)
                    for (size_t d = 0; d < SPINE_ARRAY_LEN(ks); d++) {
                        if (!sls_isa_runs((sls_isa)isa)) continue;
                        mm_set_isa(isa);
                        int n = ns[b], k = ks[d], ldx = k + 3, ldy = n + 2;
                        float *w = rnd((size_t)n * k, 100 + b * 10 + d);
                        float *w3 = rnd((size_t)n * k, 200 + b * 10 + d);
                        uint16_t *wb = spine_alloc_aligned((size_t)n * k * 2 + 64);
                        uint16_t *w3b = spine_alloc_aligned((size_t)n * k * 2 + 64);
                        for (size_t i = 0; i < (size_t)n * k; i++) {
                            wb[i] = spine_f32_to_bf16(w[i]);
                            w3b[i] = spine_f32_to_bf16(w3[i]);
                        }
                        mm_weight R = {dt ? (void *)wb : w, dt ? SPINE_DT_BF16 : SPINE_DT_F32, n, k,
                                       false};
                        mm_weight R3 = {dt ? (void *)w3b : w3, R.dt, n, k, false};
                        mm_weight W = copy_weight(&R, panels), W3 = copy_weight(&R3, panels);
                        for (size_t a = 0; a < SPINE_ARRAY_LEN(ms); a++) {
                            int m = ms[a];
                            float *x = rnd((size_t)m * ldx, 1 + a);
                            float *y = calloc((size_t)m * ldy, 4), *y3 = calloc((size_t)m * ldy, 4);
                            float *ref = calloc((size_t)m * ldy, 4);
                            float *ref3 = calloc((size_t)m * ldy, 4);
                            mm_small_scalar(x, m, ldx, &R, 0, n, ref, ldy);
                            mm_small_scalar(x, m, ldx, &R3, 0, n, ref3, ldy);
                            for (int swiglu = 0; swiglu < 2; swiglu++) {
                                mm_job j = {.x = x, .m = m, .ldx = ldx, .w = W, .y = y, .ldy = ldy};
                                if (swiglu) j.w3 = W3, j.y3 = y3;
                                const uint64_t ns0 = c.ns, wait0 = c.wait_ns;
                                assert_int_equal(mm_run(&c, &j, 1, NULL), SPINE_OK);
                                /* the region's time is counted, its imbalance within it */
                                assert_true(c.ns > ns0 && c.wait_ns - wait0 <= c.ns - ns0);
                                for (int i = 0; i < m; i++)
                                    for (int r = 0; r < n; r++) {
                                        float want = ref[(size_t)i * ldy + r];
                                        if (swiglu)
                                            want = mm_silu(want) * ref3[(size_t)i * ldy + r];
                                        float got = y[(size_t)i * ldy + r];
                                        bool exact = panels && !swiglu;
                                        if (exact ? memcmp(&got, &want, 4) != 0
                                                  : fabsf(got - want) >
                                                        2e-7f * (float)k * (1.0f + fabsf(want)))
                                            fail_msg("isa %d panels %d dt %d m %d n %d k %d swiglu "
                                                     "%d: [%d,%d] %.9g vs %.9g",
                                                     isa, panels, dt, m, n, k, swiglu, i, r, got,
                                                     want);
                                    }
                            }
                            spine_free_aligned(x);
                            free(y);
                            free(y3);
                            free(ref);
                            free(ref3);
                        }
                        spine_free_aligned((void *)W.data);
                        spine_free_aligned((void *)W3.data);
                        spine_free_aligned(w);
                        spine_free_aligned(w3);
                        spine_free_aligned(wb);
                        spine_free_aligned(w3b);
                    }
    mm_set_isa(-1);
    mm_set_amx(-1);
    mm_ctx_free(&c);
    spine_pool_free(pool);
}

/* Within one ISA, a row's product is bitwise the same whatever m it is computed with (the
 * small-m and tiled kernels sum in one order; k beyond one tile block; a token's result does
 * not depend on how many tokens share its expert) */
static void products_do_not_depend_on_m(void **state) {
    (void)state;
    const int ks[] = {5, 37, 100, 1100};
    const int ms[] = {1, 3, 4, 9, 20, 70};
    const int n = 29;
    spine_pool *pool = NULL;
    assert_int_equal(spine_pool_create(2, &pool, NULL), SPINE_OK);
    mm_ctx c;
    assert_int_equal(mm_ctx_init(&c, pool, 1100, NULL), SPINE_OK);
    mm_set_amx(0); /* with AMX, m <= 8 and m > 8 differ in the last bits */
    int mmax = 70;
    for (int isa = 0; isa <= SLS_ISA_AVX512; isa++)
        for (int panels = 0; panels < 2; panels++) {
            /* (the portable path hands m > 8 on row-major weights to BLAS, which promises no such
             * thing) */
            if (!sls_isa_runs((sls_isa)isa) || (isa == 0 && !panels)) continue;
            mm_set_isa(isa);
            for (int dt = 0; dt < 2; dt++)
                for (size_t d = 0; d < SPINE_ARRAY_LEN(ks); d++) {
                    int k = ks[d], ldx = k + 1;
                    float *x = rnd((size_t)mmax * ldx, 7 + d);
                    float *w = rnd((size_t)n * k, 70 + d);
                    uint16_t *wb = spine_alloc_aligned((size_t)n * k * 2 + 64);
                    for (size_t i = 0; i < (size_t)n * k; i++) wb[i] = spine_f32_to_bf16(w[i]);
                    mm_weight R = {dt ? (void *)wb : w, dt ? SPINE_DT_BF16 : SPINE_DT_F32, n, k,
                                   false};
                    mm_weight W = copy_weight(&R, panels);
                    float *one = calloc(n, 4), *all = calloc((size_t)mmax * n, 4);
                    for (size_t a = 0; a < SPINE_ARRAY_LEN(ms); a++) {
                        int m = ms[a];
                        mm_job j = {.x = x, .m = m, .ldx = ldx, .w = W, .y = all, .ldy = n};
                        assert_int_equal(mm_run(&c, &j, 1, NULL), SPINE_OK);
                        for (int i = 0; i < m; i++) {
                            mm_job o = {.x = x + (size_t)i * ldx,
                                        .m = 1,
                                        .ldx = ldx,
                                        .w = W,
                                        .y = one,
                                        .ldy = n};
                            assert_int_equal(mm_run(&c, &o, 1, NULL), SPINE_OK);
                            if (memcmp(one, all + (size_t)i * n, (size_t)n * 4) != 0)
                                fail_msg(
                                    "isa %d panels %d dt %d k %d: row %d of m = %d differs from "
                                    "m = 1",
                                    isa, panels, dt, k, i, m);
                        }
                    }
                    spine_free_aligned(x);
                    spine_free_aligned((void *)W.data);
                    spine_free_aligned(w);
                    spine_free_aligned(wb);
                    free(one);
                    free(all);
                }
        }
    mm_set_isa(-1);
    mm_set_amx(-1);
    mm_ctx_free(&c);
    spine_pool_free(pool);
}

/* AMX (F32 inputs as three BF16 parts on the tile unit, F32 weights too, BF16 weights as they
 * lie), where this CPU has it: every output within
 * an F32 rounding bound of the exact product, (k + 8) 2^-24 sum |x w| (a recursive F32 sum
 * allows k 2^-24; the three-part split drops terms below 2^-24 of each product); a row's
 * result bitwise the same for every m past 8 (the 2 x 2, tall and multi-pass schedules sum in
 * one order) and whether mm_run or a whole job on one thread (mm_job_rows) computes it; the
 * inputs split in one region not taken for new inputs at the same address in the next; SwiGLU
 * within float tolerance. Shapes: 1-3 groups per span and a short last group (50), k around
 * the 32-column chunks, m around the 16-row tiles and the 32 / 64 schedule limits. */
static void amx_products_within_f32_rounding(void **state) {
    (void)state;
    if (!mm_amx_runs() || !sls_isa_runs(SLS_ISA_AVX512)) {
        print_message("AMX-BF16 not available here: skipped\n");
        skip();
    }
    const int ms[] = {9, 16, 17, 31, 32, 33, 48, 49, 64, 65, 100};
    const int ns[] = {16, 32, 48, 50, 112, 300};
    const int ks[] = {1, 2, 31, 32, 33, 100, 300};
    const int mmax = 100;
    spine_pool *pool = NULL;
    assert_int_equal(spine_pool_create(2, &pool, NULL), SPINE_OK);
    mm_ctx c;
    assert_int_equal(mm_ctx_init(&c, pool, 300, NULL), SPINE_OK);
    mm_set_amx(1);
    assert_true(mm_amx_on());
    for (int dt = 0; dt < 2; dt++)
        for (size_t b = 0; b < SPINE_ARRAY_LEN(ns); b++)
            for (size_t d = 0; d < SPINE_ARRAY_LEN(ks); d++) {
                int n = ns[b], k = ks[d], ldx = k + 5, ldy = n + 3;
                float *w = rnd((size_t)n * k, 300 + b * 10 + d);
                float *w3 = rnd((size_t)n * k, 400 + b * 10 + d);
                float *x = rnd((size_t)mmax * ldx, 500 + b * 10 + d);
                /* BF16: the weights rounded, the reference on the rounded values */
                uint16_t *wb = spine_alloc_aligned((size_t)n * k * 2 + 64);
                uint16_t *w3b = spine_alloc_aligned((size_t)n * k * 2 + 64);
                for (size_t i = 0; i < (size_t)n * k && dt; i++) {
                    wb[i] = spine_f32_to_bf16(w[i]);
                    w3b[i] = spine_f32_to_bf16(w3[i]);
                    w[i] = spine_bf16_to_f32(wb[i]);
                    w3[i] = spine_bf16_to_f32(w3b[i]);
                }
                const spine_dtype T = dt ? SPINE_DT_BF16 : SPINE_DT_F32;
                mm_weight R = {dt ? (void *)wb : w, T, n, k, false};
                mm_weight R3 = {dt ? (void *)w3b : w3, T, n, k, false};
                mm_weight W = copy_weight(&R, true), W3 = copy_weight(&R3, true);
                float *all = calloc((size_t)mmax * ldy, 4), *y = calloc((size_t)mmax * ldy, 4);
                float *y3 = calloc((size_t)mmax * ldy, 4), *z3 = calloc((size_t)mmax * ldy, 4);
                mm_job ja = {.x = x, .m = mmax, .ldx = ldx, .w = W, .y = all, .ldy = ldy};
                assert_int_equal(mm_run(&c, &ja, 1, NULL), SPINE_OK);
                for (int i = 0; i < mmax; i++)
                    for (int r = 0; r < n; r++) {
                        double s = 0, bound = 0;
                        for (int q = 0; q < k; q++) {
                            double p = (double)x[(size_t)i * ldx + q] * w[(size_t)r * k + q];
                            s += p;
                            bound += fabs(p);
                        }
                        bound *= (k + 8) * 0x1p-24;
                        double got = all[(size_t)i * ldy + r];
                        if (fabs(got - s) > bound)
                            fail_msg("dt %d n %d k %d: [%d,%d] %.9g vs %.9g (bound %.3g)", dt, n, k,
                                     i, r, got, s, bound);
                    }
                /* inputs in blocks of 16 rows (a long prompt's split capped): the same rows */
                mm_amx_set_x_cap(1);
                mm_job jb = {.x = x, .m = mmax, .ldx = ldx, .w = W, .y = y, .ldy = ldy};
                assert_int_equal(mm_run(&c, &jb, 1, NULL), SPINE_OK);
                mm_amx_set_x_cap(0);
                for (int i = 0; i < mmax; i++)
                    if (memcmp(y + (size_t)i * ldy, all + (size_t)i * ldy, (size_t)n * 4) != 0)
                        fail_msg("dt %d n %d k %d: row %d differs with the inputs in blocks", dt, n,
                                 k, i);
                for (size_t a = 0; a < SPINE_ARRAY_LEN(ms); a++) {
                    int m = ms[a];
                    mm_job j = {.x = x, .m = m, .ldx = ldx, .w = W, .y = y, .ldy = ldy};
                    assert_int_equal(mm_run(&c, &j, 1, NULL), SPINE_OK);
                    for (int i = 0; i < m; i++)
                        if (memcmp(y + (size_t)i * ldy, all + (size_t)i * ldy, (size_t)n * 4) != 0)
                            fail_msg("dt %d n %d k %d: row %d of m = %d differs from m = %d", dt, n,
                                     k, i, m, mmax);
                    memset(y, 0, (size_t)m * ldy * 4);
                    mm_job_rows(&c, 1, &j, 0, n);
                    for (int i = 0; i < m; i++)
                        if (memcmp(y + (size_t)i * ldy, all + (size_t)i * ldy, (size_t)n * 4) != 0)
                            fail_msg("n %d k %d m %d: mm_job_rows differs from mm_run", n, k, m);
                    /* SwiGLU, fused */
                    mm_job f = {
                        .x = x, .m = m, .ldx = ldx, .w = W, .y = y, .ldy = ldy, .w3 = W3, .y3 = y3};
                    assert_int_equal(mm_run(&c, &f, 1, NULL), SPINE_OK);
                    mm_job g3 = {.x = x, .m = m, .ldx = ldx, .w = W3, .y = z3, .ldy = ldy};
                    assert_int_equal(mm_run(&c, &g3, 1, NULL), SPINE_OK);
                    for (int i = 0; i < m; i++)
                        for (int r = 0; r < n; r++) {
                            float want =
                                mm_silu(all[(size_t)i * ldy + r]) * z3[(size_t)i * ldy + r];
                            float got = y[(size_t)i * ldy + r];
                            if (fabsf(got - want) > 1e-6f * (1.0f + fabsf(want)))
                                fail_msg("n %d k %d m %d swiglu: [%d,%d] %.9g vs %.9g", n, k, m, i,
                                         r, got, want);
                        }
                }
                /* new inputs at the same address: the next region splits them again */
                for (size_t i = 0; i < (size_t)mmax * ldx; i++) x[i] = -x[i];
                mm_job jn = {.x = x, .m = mmax, .ldx = ldx, .w = W, .y = y, .ldy = ldy};
                assert_int_equal(mm_run(&c, &jn, 1, NULL), SPINE_OK);
                for (int i = 0; i < mmax; i++)
                    for (int r = 0; r < n; r++)
                        if (y[(size_t)i * ldy + r] != -all[(size_t)i * ldy + r])
                            fail_msg("n %d k %d: stale split inputs at [%d,%d]", n, k, i, r);
                spine_free_aligned((void *)W.data);
                spine_free_aligned((void *)W3.data);
                spine_free_aligned(w);
                spine_free_aligned(w3);
                spine_free_aligned(wb);
                spine_free_aligned(w3b);
                spine_free_aligned(x);
                free(all);
                free(y);
                free(y3);
                free(z3);
            }
    mm_set_amx(-1);
    mm_ctx_free(&c);
    spine_pool_free(pool);
}

static const char *cfg_ok =
    "{\"architectures\":[\"MixtralForCausalLM\"],\"model_type\":\"mixtral\",\"hidden_size\":64,"
    "\"intermediate_size\":96,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
    "\"num_key_value_heads\":2,\"num_local_experts\":8,\"num_experts_per_tok\":2,"
    "\"vocab_size\":100,\"max_position_embeddings\":64,\"rope_theta\":1e6,"
    "\"rms_norm_eps\":1e-5,\"sliding_window\":null,\"tie_word_embeddings\":false,"
    "\"torch_dtype\":\"bfloat16\",\"router_aux_loss_coef\":0.02,\"hidden_act\":\"silu\"}";

static spine_status cfg(const char *s, moe_config *c, spine_error *err) {
    return moe_config_parse(s, strlen(s), c, err);
}

static char *with(const char *extra) {
    static char buf[2048];
    snprintf(buf, sizeof buf, "%.*s,%s}", (int)strlen(cfg_ok) - 1, cfg_ok, extra);
    return buf;
}

static void config_parses_hugging_face_keys(void **state) {
    (void)state;
    moe_config c;
    assert_int_equal(cfg(cfg_ok, &c, NULL), SPINE_OK);
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.kv_heads, 2);
    assert_int_equal(c.moe_every, 1);
    assert_int_equal(c.dtype, SPINE_DT_BF16);
    assert_true(c.norm_topk);
    assert_non_null(strstr(c.ignored, "router_aux_loss_coef"));
    assert_int_equal(cfg(with("\"decoder_sparse_step\":2"), &c, NULL), SPINE_OK);
    assert_int_equal(c.moe_every, 2);
    /* round trip */
    char *j = moe_config_to_json(&c);
    moe_config d;
    assert_int_equal(cfg(j, &d, NULL), SPINE_OK);
    free(j);
    assert_int_equal(d.moe_every, 2);
    assert_int_equal(d.hidden, 64);
}

static void config_refusals(void **state) {
    (void)state;
    moe_config c;
    assert_fails_with(cfg(with("\"typo_key\":1"), &c, err), SPINE_ERR_FORMAT, "unknown key");
    assert_fails_with(cfg(with("\"rope_scaling\":{\"type\":\"linear\"}"), &c, err),
                      SPINE_ERR_UNSUPPORTED, "rope_scaling");
    assert_fails_with(cfg(with("\"quantization_config\":{}"), &c, err), SPINE_ERR_UNSUPPORTED,
                      "quantization_config");
    assert_fails_with(cfg(with("\"moe_every\":2,\"decoder_sparse_step\":2"), &c, err),
                      SPINE_ERR_FORMAT, "not both");
    assert_fails_with(cfg(with("\"num_experts_per_tok\":3,\"num_local_experts\":2"), &c, err),
                      SPINE_ERR_FORMAT, "appears twice");
    assert_fails_with(cfg("{\"hidden_size\":64}", &c, err), SPINE_ERR_FORMAT, "missing");
    assert_fails_with(cfg("[1]", &c, err), SPINE_ERR_FORMAT, "object");
    assert_fails_with(cfg("{\"hidden_size\":", &c, err), SPINE_ERR_FORMAT, "config.json");
    const char *bad_heads = "{\"hidden_size\":64,\"intermediate_size\":8,\"num_hidden_layers\":1,"
                            "\"num_attention_heads\":6,\"num_key_value_heads\":4,"
                            "\"num_local_experts\":2,\"num_experts_per_tok\":1,\"vocab_size\":9}";
    assert_fails_with(cfg(bad_heads, &c, err), SPINE_ERR_FORMAT, "multiple");
    const char *big = "{\"hidden_size\":99999999,\"intermediate_size\":8,\"num_hidden_layers\":1,"
                      "\"num_attention_heads\":1,\"num_local_experts\":2,"
                      "\"num_experts_per_tok\":1,\"vocab_size\":9}";
    assert_fails_with(cfg(big, &c, err), SPINE_ERR_LIMIT, "hidden_size");
    const char *topk = "{\"hidden_size\":8,\"intermediate_size\":8,\"num_hidden_layers\":1,"
                       "\"num_attention_heads\":1,\"num_local_experts\":2,"
                       "\"num_experts_per_tok\":3,\"vocab_size\":9}";
    assert_fails_with(cfg(topk, &c, err), SPINE_ERR_FORMAT, "exceeds");
    assert_fails_with(cfg(with("\"hidden_act\":\"gelu\""), &c, err), SPINE_ERR_UNSUPPORTED, "silu");
}

static spine_status toks(const char *s, int max, moe_tokens *t, spine_error *err) {
    return moe_tokens_parse(s, strlen(s), max, t, err);
}

static void token_files(void **state) {
    (void)state;
    moe_tokens t;
    assert_int_equal(toks("# prompts\n1 2 3\n\n4,5,6\r\n  7\t8 9", 0, &t, NULL), SPINE_OK);
    assert_int_equal(t.n_seq, 3);
    assert_int_equal(t.len, 3);
    assert_int_equal(t.ids[8], 9);
    moe_tokens_free(&t);
    assert_int_equal(toks("1 2\n3 4\n5", 2, &t, NULL), SPINE_OK); /* stops after 2 */
    assert_int_equal(t.n_seq, 2);
    moe_tokens_free(&t);
    assert_fails_with(toks("1 2\n3\n", 0, &t, err), SPINE_ERR_FORMAT, "line 2");
    assert_fails_with(toks("1 x\n", 0, &t, err), SPINE_ERR_FORMAT, "column 3");
    assert_fails_with(toks("12a\n", 0, &t, err), SPINE_ERR_FORMAT, "unexpected character");
    assert_fails_with(toks("99999999999999999999\n", 0, &t, err), SPINE_ERR_RANGE, "too large");
    assert_fails_with(toks("# nothing\n\n", 0, &t, err), SPINE_ERR_FORMAT, "no token");
    assert_fails_with(toks("-\n", 0, &t, err), SPINE_ERR_FORMAT, "expected a token id");
    assert_int_equal(toks("-5 9223372036854775807\n", 0, &t, NULL), SPINE_OK);
    assert_int_equal(t.ids[0], -5);
    moe_tokens_free(&t);
}

/* a generated moe-tiny: forward runs, ids and lengths are checked, gating invariants hold */
static void gating_invariants(void **state) {
    (void)state;
    moe_config c;
    assert_int_equal(moe_preset_config("moe-tiny", &c, NULL), SPINE_OK);
    spine_tensors ts;
    assert_int_equal(moe_gen_tensors(&c, SPINE_DT_F32, 3, NULL, NULL, NULL, &ts, NULL), SPINE_OK);
    moe_model *m = NULL;
    assert_int_equal(moe_model_create(&c, &ts, &m, NULL), SPINE_OK);
    int B = 3, T = 10;
    int64_t tok[30];
    for (int i = 0; i < 30; i++) tok[i] = (i * 37) % c.vocab;
    float *ld = malloc((size_t)B * T * c.vocab * 4), *ls = malloc((size_t)B * T * c.vocab * 4);
    moe_run_opts o = {.max_batch = B, .max_seq = 12, .logits_all = true};
    moe_ctx *x = NULL;
    assert_int_equal(moe_ctx_create(m, &o, NULL, &x, NULL), SPINE_OK);
    assert_int_equal(moe_forward(x, tok, B, T, ld, NULL), SPINE_OK);
    assert_int_equal(moe_ctx_report(x)->dropped, 0);
    assert_int_equal(moe_ctx_report(x)->assignments, (uint64_t)B * T * c.top_k * c.layers);
    /* over-long: 10 in the cache + 3 > 12 */
    int64_t three[3] = {1, 2, 3};
    assert_fails_with(moe_forward(x, three, 1, 3, ld, err), SPINE_ERR_INVALID, "cache holds");
    int64_t more[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    assert_fails_with(moe_forward(x, more, 3, 3, ld, err), SPINE_ERR_LIMIT, "exceeds");
    moe_ctx_reset(x);
    int64_t bad[3] = {0, c.vocab, 1};
    assert_fails_with(moe_forward(x, bad, 1, 3, ld, err), SPINE_ERR_RANGE, "vocabulary");
    bad[1] = -1;
    assert_fails_with(moe_forward(x, bad, 1, 3, ld, err), SPINE_ERR_RANGE, "position 1");
    moe_ctx_free(x);
    /* static with ample capacity computes the same thing; tight capacity drops */
    o.gating = MOE_GATING_STATIC;
    o.capacity_factor = (double)c.experts; /* C = k * S: nothing can overflow */
    assert_int_equal(moe_ctx_create(m, &o, NULL, &x, NULL), SPINE_OK);
    assert_int_equal(moe_forward(x, tok, B, T, ls, NULL), SPINE_OK);
    assert_int_equal(moe_ctx_report(x)->dropped, 0);
    for (size_t i = 0; i < (size_t)B * T * c.vocab; i++)
        if (fabsf(ld[i] - ls[i]) > 1e-5f) fail_msg("logit %zu: %g vs %g", i, ld[i], ls[i]);
    moe_ctx_free(x);
    o.capacity_factor = 0.25;
    assert_int_equal(moe_ctx_create(m, &o, NULL, &x, NULL), SPINE_OK);
    assert_int_equal(moe_forward(x, tok, B, T, ls, NULL), SPINE_OK);
    assert_true(moe_ctx_report(x)->dropped > 0);
    /* slots = E * C per layer, C = ceil(0.25 * 2 * 30 / 8) = 2 */
    assert_int_equal(moe_ctx_report(x)->slots_computed, (uint64_t)c.layers * c.experts * 2);
    moe_ctx_free(x);
    o.capacity_factor = 0;
    assert_fails_with(moe_ctx_create(m, &o, NULL, &x, err), SPINE_ERR_INVALID, "capacity");
    o.capacity_factor = 1;
    o.max_seq = c.max_pos + 1;
    assert_fails_with(moe_ctx_create(m, &o, NULL, &x, err), SPINE_ERR_LIMIT, "maximum");
    free(ld);
    free(ls);
    moe_model_free(m);
}

static void weights_must_match_the_config(void **state) {
    (void)state;
    moe_config c;
    assert_int_equal(moe_preset_config("moe-tiny", &c, NULL), SPINE_OK);
    spine_tensors ts;
    assert_int_equal(moe_gen_tensors(&c, SPINE_DT_F32, 3, NULL, NULL, NULL, &ts, NULL), SPINE_OK);
    moe_config wrong = c;
    wrong.inter = 97;
    moe_model *m = NULL;
    assert_fails_with(moe_model_create(&wrong, &ts, &m, err), SPINE_ERR_FORMAT, "w1.weight");
    assert_int_equal(moe_gen_tensors(&c, SPINE_DT_F32, 3, NULL, NULL, NULL, &ts, NULL), SPINE_OK);
    wrong = c;
    wrong.layers = 1; /* layer 1's tensors left over */
    assert_fails_with(moe_model_create(&wrong, &ts, &m, err), SPINE_ERR_FORMAT, "do not match");
    assert_int_equal(moe_gen_tensors(&c, SPINE_DT_F32, 3, NULL, NULL, NULL, &ts, NULL), SPINE_OK);
    wrong = c;
    wrong.moe_every = 2; /* layer 0 would be dense: mlp.* missing */
    assert_fails_with(moe_model_create(&wrong, &ts, &m, err), SPINE_ERR_FORMAT, "mlp.gate_proj");
}

int test_group_moe(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(products_match_the_scalar_reference),
        cmocka_unit_test(products_do_not_depend_on_m),
        cmocka_unit_test(amx_products_within_f32_rounding),
        cmocka_unit_test(config_parses_hugging_face_keys),
        cmocka_unit_test(config_refusals),
        cmocka_unit_test(token_files),
        cmocka_unit_test(gating_invariants),
        cmocka_unit_test(weights_must_match_the_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
