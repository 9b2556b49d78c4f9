/* idlepoll.h: keeps a busy process's CPUs from halting between requests (idlepoll.c). */
#ifndef SPINE_IDLEPOLL_H
#define SPINE_IDLEPOLL_H

#include "base.h"

typedef struct spine_idlepoll spine_idlepoll;

/* Start one filler thread per CPU of the process's affinity mask (at most max_cpus), each pinned
 * to its CPU at the SCHED_IDLE policy. Within window_ms after the last spine_idlepoll_touch they
 * spin; otherwise they sleep. A CPU running only a filler never halts, and any
 * other thread that wakes there preempts the filler at once. Fails (and starts nothing) where
 * SCHED_IDLE is refused: a filler at normal priority would compete with the work. */
spine_status spine_idlepoll_start(double window_ms, int max_cpus, spine_idlepoll **out,
                                  spine_error *err);
/* Work arrived: keep the CPUs awake for the next window. Cheap (one atomic store) while the
 * fillers spin; wakes them when they sleep. ip may be NULL. */
void spine_idlepoll_touch(spine_idlepoll *ip);
/* How many fillers run, and the CPUs they hold as a list ("0-1"), for logs. */
int spine_idlepoll_cpus(const spine_idlepoll *ip, char *list, size_t cap);
/* Rounds of spinning so far (all fillers) and how many fillers sleep now: for tests. */
void spine_idlepoll_stats(const spine_idlepoll *ip, uint64_t *spins, int *sleeping);
/* Stop and join the fillers. ip may be NULL. */
void spine_idlepoll_stop(spine_idlepoll *ip);

#endif
