/* test_moe_trace.c: routing traces (format round trip and refusals, generation), the expert
 * cache policies on a hand-worked trace, Belady never beaten on generated ones, placements on a
 * hand-worked load profile. */
#include "test_util.h"

#include "../../src/moe/moe_trace.h"

static spine_status parse(const char *s, moe_trace *t, spine_error *err) {
    return moe_trace_parse(s, strlen(s), t, err);
}

static void trace_format(void **state) {
    (void)state;
    moe_trace t;
    const char *ok = "spine-moe-trace 1 experts=3 top_k=1 expert_bytes=100\n# c\n\n0 1 5 0 2\r\n"
                     "0 3 0 0 7\n2 1 1 1 1\n";
    assert_int_equal(parse(ok, &t, NULL), SPINE_OK);
    assert_int_equal(t.n, 3);
    assert_int_equal(t.experts, 3);
    assert_int_equal(t.expert_bytes, 100);
    assert_int_equal(t.layer[1], 3);
    assert_int_equal(t.counts[1 * 3 + 2], 7);
    int layers[MOE_TRACE_MAX_LAYERS];
    assert_int_equal(moe_trace_layers(&t, layers), 2);
    char *text = moe_trace_to_text(&t);
    moe_trace u;
    assert_int_equal(parse(text, &u, NULL), SPINE_OK);
    assert_int_equal(u.n, 3);
    assert_memory_equal(u.counts, t.counts, 9 * sizeof(uint32_t));
    free(text);
    moe_trace_free(&u);
    moe_trace_free(&t);
    const char *h = "spine-moe-trace 1 experts=2 top_k=1 expert_bytes=0\n";
    char buf[256];
#define BAD(body, code, phrase)                                                                    \
    snprintf(buf, sizeof buf, "%s%s", h, body);                                                    \
    assert_fails_with(parse(buf, &t, err), code, phrase)
    BAD("0 0 1\n", SPINE_ERR_FORMAT, "line 2: expected 2 token counts");
    BAD("0 0 1 2 3\n", SPINE_ERR_FORMAT, "more than 2");
    BAD("1 0 1 2\n0 0 1 2\n", SPINE_ERR_FORMAT, "comes after");
    BAD("0 5000 1 2\n", SPINE_ERR_FORMAT, "layer index");
    BAD("0 0 1 99999999999\n", SPINE_ERR_FORMAT, "count 1");
    BAD("0 0 1 -2\n", SPINE_ERR_FORMAT, "count 1");
    BAD("", SPINE_ERR_FORMAT, "no records");
#undef BAD
    assert_fails_with(parse("", &t, err), SPINE_ERR_FORMAT, "no header");
    assert_fails_with(
        parse("spine-moe-trace 2 experts=2 top_k=1 expert_bytes=0\n0 0 1 1\n", &t, err),
        SPINE_ERR_FORMAT, "expected 'spine-moe-trace 1");
    assert_fails_with(parse("spine-moe-trace 1 experts=0 top_k=1 expert_bytes=0\n", &t, err),
                      SPINE_ERR_LIMIT, "experts must be");
    assert_fails_with(parse("spine-moe-trace 1 experts=2 top_k=3 expert_bytes=0\n", &t, err),
                      SPINE_ERR_LIMIT, "top_k");
}

/* one layer, 4 experts, batches {0,1} {2} {0,1} {2,3} {0}: requests 0 1 | 2 | 0 1 | 2 3 | 0 */
static moe_trace hand_trace(void) {
    moe_trace t;
    moe_trace_init(&t, 4, 1, 10);
    const uint32_t b[5][4] = {{1, 1, 0, 0}, {0, 0, 1, 0}, {1, 1, 0, 0}, {0, 0, 1, 1}, {1, 0, 0, 0}};
    for (int i = 0; i < 5; i++) assert_int_equal(moe_trace_add(&t, i, 0, b[i], NULL), SPINE_OK);
    return t;
}

static void cache_policies_on_a_hand_worked_trace(void **state) {
    (void)state;
    moe_trace t = hand_trace();
    /* worked by hand with 2 slots (see docs/MOE.md for the rules) */
    const uint64_t want[MOE_POLICY_COUNT] = {[MOE_POLICY_LIFO] = 7,
                                             [MOE_POLICY_FIFO] = 8,
                                             [MOE_POLICY_LRU] = 8,
                                             [MOE_POLICY_LFU] = 8,
                                             [MOE_POLICY_BELADY] = 6};
    for (int p = 0; p < MOE_POLICY_COUNT; p++) {
        moe_cache_stats s;
        assert_int_equal(moe_cache_simulate(&t, 2, (moe_policy)p, &s, NULL), SPINE_OK);
        assert_int_equal(s.requests, 8);
        if (s.misses != want[p])
            fail_msg("%s: %llu misses, worked by hand: %llu", moe_policy_name((moe_policy)p),
                     (unsigned long long)s.misses, (unsigned long long)want[p]);
        assert_int_equal(s.hits + s.misses, 8);
    }
    moe_cache_stats s;
    assert_int_equal(moe_cache_simulate(&t, 4, MOE_POLICY_LIFO, &s, NULL), SPINE_OK);
    assert_int_equal(s.misses, 4); /* compulsory only */
    assert_fails_with(moe_cache_simulate(&t, 0, MOE_POLICY_LRU, &s, err), SPINE_ERR_INVALID,
                      "slots");
    moe_policy p;
    assert_int_equal(moe_policy_parse("belady", &p), 0);
    assert_int_equal(p, MOE_POLICY_BELADY);
    assert_int_not_equal(moe_policy_parse("mru", &p), 0);
    moe_trace_free(&t);
}

static void belady_is_never_beaten(void **state) {
    (void)state;
    for (int seed = 1; seed <= 4; seed++) {
        moe_trace_gen_opts g = {.layers = 2,
                                .experts = 16,
                                .top_k = 2,
                                .batches = 60,
                                .tokens = 8,
                                .alpha = 0.6 + 0.3 * seed,
                                .persistence = 0.5,
                                .seed = (uint64_t)seed};
        moe_trace t;
        assert_int_equal(moe_trace_generate(&g, &t, NULL), SPINE_OK);
        assert_int_equal(t.n, 120);
        for (int k = 1; k <= 16; k++) {
            moe_cache_stats b, s;
            assert_int_equal(moe_cache_simulate(&t, k, MOE_POLICY_BELADY, &b, NULL), SPINE_OK);
            for (int p = 0; p < MOE_POLICY_COUNT; p++) {
                assert_int_equal(moe_cache_simulate(&t, k, (moe_policy)p, &s, NULL), SPINE_OK);
                if (s.misses < b.misses)
                    fail_msg("seed %d, %d slots: %s %llu misses < Belady %llu", seed, k,
                             moe_policy_name((moe_policy)p), (unsigned long long)s.misses,
                             (unsigned long long)b.misses);
            }
        }
        /* tokens x k assignments per record */
        for (size_t i = 0; i < t.n; i++) {
            uint32_t sum = 0;
            for (int e = 0; e < 16; e++) sum += t.counts[i * 16 + e];
            assert_int_equal(sum, 16);
        }
        moe_trace_free(&t);
    }
    moe_trace_gen_opts bad = {.layers = 1,
                              .experts = 4,
                              .top_k = 5,
                              .batches = 1,
                              .tokens = 1,
                              .alpha = 1,
                              .persistence = 0.5};
    moe_trace t;
    assert_fails_with(moe_trace_generate(&bad, &t, err), SPINE_ERR_INVALID, "top_k");
}

static void placements_on_a_hand_worked_profile(void **state) {
    (void)state;
    moe_trace t;
    moe_trace_init(&t, 4, 1, 0);
    const uint32_t c[4] = {60, 20, 15, 5};
    for (int i = 0; i < 10; i++) assert_int_equal(moe_trace_add(&t, i, 0, c, NULL), SPINE_OK);
    const double want[MOE_PLACE_COUNT] = {[MOE_PLACE_RR] = 0.75,
                                          [MOE_PLACE_GREEDY] = 0.65,
                                          [MOE_PLACE_ANTICORR] = 0.65,
                                          [MOE_PLACE_REPLICATE] = 0.55};
    for (int p = 0; p < MOE_PLACE_COUNT; p++) {
        moe_placement *pl;
        int nl;
        moe_place_report r;
        assert_int_equal(moe_place(&t, 2, (moe_place_policy)p, 5, &pl, &nl, &r, NULL), SPINE_OK);
        assert_int_equal(nl, 1);
        assert_int_equal(r.batches, 5);
        if (r.max_load < want[p] - 1e-9 || r.max_load > want[p] + 1e-9)
            fail_msg("%s: max load %g, worked by hand %g", moe_place_name((moe_place_policy)p),
                     r.max_load, want[p]);
        assert_true(r.avg_max_load > want[p] - 1e-9 && r.avg_max_load < want[p] + 1e-9);
        /* E/D experts per group, one more with replication (the 2 heaviest placed twice) */
        int per[2] = {0, 0}, copies = 0;
        for (int i = 0; i < 4 * pl[0].max_copies; i++)
            if (pl[0].group[i] >= 0) per[pl[0].group[i]]++, copies++;
        if (p == MOE_PLACE_REPLICATE) {
            assert_int_equal(copies, 6);
            assert_int_equal(per[0], 3);
            assert_int_equal(per[1], 3);
            assert_int_not_equal(pl[0].group[0], pl[0].group[1]); /* expert 0: two groups */
        } else {
            assert_int_equal(per[0], 2);
            assert_int_equal(per[1], 2);
        }
        moe_placements_free(pl, nl);
    }
    moe_placement *pl;
    int nl;
    moe_place_report r;
    assert_fails_with(moe_place(&t, 5, MOE_PLACE_RR, 5, &pl, &nl, &r, err), SPINE_ERR_INVALID,
                      "groups");
    assert_fails_with(moe_place(&t, 2, MOE_PLACE_RR, 10, &pl, &nl, &r, err), SPINE_ERR_INVALID,
                      "no batches");
    moe_trace_free(&t);
}

static spine_status pparse(const char *s, moe_placement **pl, int *n, spine_error *err) {
    return moe_placement_parse(s, strlen(s), pl, n, err);
}

static void placement_files(void **state) {
    (void)state;
    moe_placement *pl;
    int n;
    const char *ok = "spine-moe-placement 1 experts=3 groups=2 copies=2\n# x\nlayer 4: 1 0/1 0\n"
                     "layer 0: 0 0 1/0\r\n";
    assert_int_equal(pparse(ok, &pl, &n, NULL), SPINE_OK);
    assert_int_equal(n, 2);
    assert_int_equal(pl[0].layer, 4);
    assert_int_equal(pl[0].group[1 * 2 + 1], 1);
    assert_int_equal(pl[0].group[0 * 2 + 1], -1);
    char *text = moe_placement_to_text(pl, n);
    moe_placement *q;
    int m;
    assert_int_equal(pparse(text, &q, &m, NULL), SPINE_OK);
    assert_int_equal(m, 2);
    assert_memory_equal(q[1].group, pl[1].group, 6 * sizeof(int));
    free(text);
    moe_placements_free(q, m);
    moe_placements_free(pl, n);
    const char *h = "spine-moe-placement 1 experts=3 groups=2 copies=2\n";
    char buf[256];
#define BAD(body, phrase)                                                                          \
    snprintf(buf, sizeof buf, "%s%s", h, body);                                                    \
    assert_fails_with(pparse(buf, &pl, &n, err), SPINE_ERR_FORMAT, phrase)
    BAD("layer 0: 0 1\n", "expert 2");
    BAD("layer 0: 0 1 1 1\n", "more than 3");
    BAD("layer 0: 0 2 1\n", "expert 1");
    BAD("layer 0: 0 1/1 1\n", "placed twice on group 1");
    BAD("layer 0: 0 1/0/1 1\n", "expert 1");
    BAD("layer 0: 0 1 1\nlayer 0: 0 1 1\n", "layer 0 placed twice");
    BAD("layer 9999: 0 1 1\n", "expected 'layer L:'");
    BAD("lay 0: 0 1 1\n", "expected 'layer L:'");
    BAD("", "no layers");
#undef BAD
    assert_fails_with(pparse("spine-moe-placement 1 experts=2 groups=3 copies=1\n", &pl, &n, err),
                      SPINE_ERR_FORMAT, "C <= D <= E");
    assert_fails_with(pparse("", &pl, &n, err), SPINE_ERR_FORMAT, "no header");
}

int test_group_moe_trace(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(trace_format),
        cmocka_unit_test(cache_policies_on_a_hand_worked_trace),
        cmocka_unit_test(belady_is_never_beaten),
        cmocka_unit_test(placements_on_a_hand_worked_profile),
        cmocka_unit_test(placement_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
