/* test_pool.c: the thread pool runs every task exactly once, region after region; the idle-poll
 * fillers spin only within their window and wake on a touch. */
#include "test_util.h"

#include "../../src/base/idlepoll.h"
#include "../../src/base/pool.h"

#include <stdatomic.h>
#include <time.h>

typedef struct counts {
    atomic_int hits[1000];
    atomic_int total;
} counts;

static void count_task(void *arg, int task, int thread) {
    counts *c = arg;
    (void)thread;
    atomic_fetch_add(&c->hits[task], 1);
    atomic_fetch_add(&c->total, 1);
}

static void runs_every_task_once_per_region(void **state) {
    (void)state;
    for (int threads = 1; threads <= 4; threads++) {
        spine_pool *p;
        assert_int_equal(spine_pool_create(threads, &p, NULL), SPINE_OK);
        assert_int_equal(spine_pool_size(p), threads);
        static counts c;
        for (int region = 0; region < 2000; region++) {
            int n = 1 + region % 37;
            memset(&c, 0, sizeof c);
            spine_pool_run(p, n, count_task, &c);
            assert_int_equal(atomic_load(&c.total), n);
            for (int t = 0; t < n; t++) assert_int_equal(atomic_load(&c.hits[t]), 1);
        }
        spine_pool_free(p);
    }
}

static void wakes_sleeping_workers(void **state) {
    (void)state;
    spine_pool *p;
    assert_int_equal(spine_pool_create(3, &p, NULL), SPINE_OK);
    static counts c;
    for (int i = 0; i < 3; i++) {
        struct timespec ts = {0, 5 * 1000 * 1000}; /* longer than the spin: workers sleep */
        nanosleep(&ts, NULL);
        memset(&c, 0, sizeof c);
        spine_pool_run(p, 100, count_task, &c);
        assert_int_equal(atomic_load(&c.total), 100);
    }
    spine_pool_free(p);
}

static void rejects_bad_sizes(void **state) {
    (void)state;
    spine_pool *p;
    assert_fails_with(spine_pool_create(0, &p, err), SPINE_ERR_INVALID, "thread count");
    assert_null(p);
    spine_pool_run(NULL, 3, count_task, &(counts){0}); /* NULL pool runs inline */
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static void idle_poll_spins_in_the_window_only(void **state) {
    (void)state;
    spine_idlepoll *ip;
    /* one filler per CPU of the affinity mask, at most 4 */
    assert_int_equal(spine_idlepoll_start(30, 4, &ip, NULL), SPINE_OK);
    char list[64];
    int want = spine_idlepoll_cpus(ip, list, sizeof list);
    assert_true(want >= 1 && want <= 4);
    assert_true(list[0] >= '0' && list[0] <= '9');
    uint64_t s0, s1;
    int sl;
    for (int round = 0; round < 3; round++) {
        spine_idlepoll_touch(ip); /* wakes them: they spin */
        spine_idlepoll_stats(ip, &s0, &sl);
        bool spun = false;
        for (int i = 0; i < 1000 && !spun; i++) {
            spine_idlepoll_touch(ip);
            sleep_ms(10);
            spine_idlepoll_stats(ip, &s1, &sl);
            spun = s1 > s0;
        }
        assert_true(spun);
        /* no touch: after the window every filler sleeps (SCHED_IDLE threads run only when a CPU
         * has nothing else: on a busy machine they may take a while to notice), and sleeping
         * ones do not spin */
        bool asleep = false;
        for (int i = 0; i < 1000 && !asleep; i++) {
            sleep_ms(10);
            spine_idlepoll_stats(ip, &s1, &sl);
            asleep = sl == want;
        }
        assert_true(asleep);
        spine_idlepoll_stats(ip, &s0, &sl);
        sleep_ms(60);
        spine_idlepoll_stats(ip, &s1, &sl);
        assert_true(s1 == s0);
    }
    spine_idlepoll_stop(ip);
    spine_idlepoll_stop(NULL);
    spine_idlepoll_touch(NULL);
    assert_fails_with(spine_idlepoll_start(0, 4, &ip, err), SPINE_ERR_INVALID, "window");
    assert_null(ip);
    assert_fails_with(spine_idlepoll_start(10, 0, &ip, err), SPINE_ERR_INVALID, "CPUs");
    assert_null(ip);
}

int test_group_pool(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(runs_every_task_once_per_region),
        cmocka_unit_test(wakes_sleeping_workers),
        cmocka_unit_test(rejects_bad_sizes),
        cmocka_unit_test(idle_poll_spins_in_the_window_only),
    };
    return cmocka_run_group_tests_name("pool", tests, NULL, NULL);
}
