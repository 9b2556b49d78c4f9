/* test_main.c: runs every group in test_list.h; `spine_unit GROUP` runs one. */
#include "test_list.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    int failed = 0, ran = 0;
#define X(name)                                                                                    \
    if (argc < 2 || strcmp(argv[1], #name) == 0) {                                                 \
        failed += test_group_##name();                                                             \
        ran++;                                                                                     \
    }
    SPINE_TEST_GROUPS(X)
#undef X
    if (!ran) {
        fprintf(stderr, "no test group named '%s'\n", argv[1]);
        return 2;
    }
    return failed ? 1 : 0;
}
