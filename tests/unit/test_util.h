/* test_util.h: what every unit-test file includes. */
#ifndef SPINE_TEST_UTIL_H
#define SPINE_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/base/base.h"

/* assert a status and that the error message contains a phrase */
#define assert_fails_with(expr, code, phrase)                                                      \
    do {                                                                                           \
        spine_error e_ = {0};                                                                      \
        spine_error *err = &e_;                                                                    \
        spine_status st_ = (expr);                                                                 \
        if (st_ != (code) || !strstr(e_.msg, (phrase)))                                            \
            fail_msg("got status %d, message '%s'; wanted %d with '%s'", st_, e_.msg, code,        \
                     phrase);                                                                      \
        (void)err;                                                                                 \
    } while (0)

#endif
