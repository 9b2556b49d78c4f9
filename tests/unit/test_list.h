/* test_list.h: every unit-test group, registered in one place. Each group is a function
 * `int test_group_NAME(void)` returning its number of failures (cmocka_run_group_tests). */
#ifndef SPINE_TEST_LIST_H
#define SPINE_TEST_LIST_H

#define SPINE_TEST_GROUPS(X)                                                                       \
    X(json)                                                                                        \
    X(safetensors)                                                                                 \
    X(numeric)                                                                                     \
    X(pool)                                                                                        \
    X(kernels)                                                                                     \
    X(store)                                                                                       \
    X(config)                                                                                      \
    X(dlrm)                                                                                        \
    X(criteo)                                                                                      \
    X(moe)                                                                                         \
    X(moe_trace)

#define X(name) int test_group_##name(void);
SPINE_TEST_GROUPS(X)
#undef X

#endif
