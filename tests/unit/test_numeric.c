/* test_numeric.c: half/bfloat16 conversion and the random generator. */
#include "test_util.h"

#include <math.h>

static void f16_round_trips_every_half(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = spine_f16_to_f32((uint16_t)h);
        if (isnan(f)) {
            assert_true(isnan(spine_f16_to_f32(spine_f32_to_f16(f))));
            continue;
        }
        assert_int_equal(spine_f32_to_f16(f), h);
    }
}

static void f16_rounds_to_nearest_even(void **state) {
    (void)state;
    assert_int_equal(spine_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(spine_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);            /* tie -> even */
    assert_int_equal(spine_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);        /* tie -> even */
    assert_int_equal(spine_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01); /* above tie */
    assert_int_equal(spine_f32_to_f16(65520.0f), 0x7c00);                   /* overflow */
    assert_int_equal(spine_f32_to_f16(0x1p-25f), 0x0000);                   /* tie to zero */
    assert_int_equal(spine_f32_to_f16(0x1p-25f + 0x1p-35f), 0x0001);        /* min subnormal */
    assert_int_equal(spine_f32_to_f16(-0.0f), 0x8000);
}

static void bf16_round_trips(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = spine_bf16_to_f32((uint16_t)h);
        if (!isnan(f)) assert_int_equal(spine_f32_to_bf16(f), h);
    }
    assert_int_equal(spine_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80); /* tie -> even */
}

static void rng_is_deterministic_and_bounded(void **state) {
    (void)state;
    spine_rng a, b;
    spine_rng_seed(&a, 7);
    spine_rng_seed(&b, 7);
    for (int i = 0; i < 1000; i++) assert_true(spine_rng_next(&a) == spine_rng_next(&b));
    uint64_t counts[7] = {0};
    for (int i = 0; i < 70000; i++) {
        uint64_t x = spine_rng_below(&a, 7);
        assert_true(x < 7);
        counts[x]++;
        float u = spine_rng_uniform(&a);
        assert_true(u >= 0.0f && u < 1.0f);
    }
    for (int i = 0; i < 7; i++) assert_true(counts[i] > 9000 && counts[i] < 11000);
}

int test_group_numeric(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(f16_round_trips_every_half),
        cmocka_unit_test(f16_rounds_to_nearest_even),
        cmocka_unit_test(bf16_round_trips),
        cmocka_unit_test(rng_is_deterministic_and_bounded),
    };
    return cmocka_run_group_tests_name("numeric", tests, NULL, NULL);
}
