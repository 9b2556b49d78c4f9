/* pool.h: spine's thread pool (internal side). One parallel region at a time per pool:
 * spine_pool_run hands out task indices 0..ntasks-1 to the pool's threads, the caller included,
 * and returns when all are done. Workers spin briefly before sleeping, so back-to-back regions
 * (a batch-1 inference has two) cost microseconds, not a futex round trip each. */
#ifndef SPINE_POOL_H
#define SPINE_POOL_H

#include "base.h"

#include <sched.h>

typedef void (*spine_task_fn)(void *arg, int task, int thread);

/* pool may be NULL: the tasks then run on the caller, in order. */
void spine_pool_run(spine_pool *pool, int ntasks, spine_task_fn fn, void *arg);

/* One step of a wait for another thread of a region: a pause while the wait is short (0.3-1 ms
 * of pauses, by the CPU; yielding after 0.1 ms cost MoE decode 1-3%, whose regions' ends can
 * wait that long on a slower thread), then a yield of the core. The thread waited on may have been
 * preempted by other work on the machine (a server's HTTP threads, a load generator); yielding lets
 * it run here instead of the waiter burning the core it needs. *n counts the steps of this wait,
 * from 0. */
static inline void spine_wait_step(unsigned *n) {
    if (++*n < 16384)
        __builtin_ia32_pause();
    else
        sched_yield();
}

#endif
