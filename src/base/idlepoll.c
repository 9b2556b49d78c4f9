/* idlepoll.c: filler threads that keep a server's CPUs from halting between requests.
 *
 * On a virtual machine an idle vCPU halts; the host then runs other work on the core, and the
 * next batch finds caches, TLBs and clocks cold. On the 2-vCPU test VM a DLRM batch that followed
 * 20 ms of idle took twice as long as one run back to back, and one at SCHED_IDLE spinning filler
 * per vCPU gave most of it back (docs/BENCHMARKS.md, "The CPUs kept awake between requests").
 * The fillers run at SCHED_IDLE, so any ordinary thread that becomes runnable on their CPU
 * preempts them at once; they spin only within the window after the last touch and sleep on a
 * condition variable after it, so an idle server uses no CPU.
 *
 * Preempting a filler costs the woken thread an inter-processor interrupt (on a VM a trip through
 * the host) that waking an idle, still-polling CPU does not: batch-1 requests back to back took
 * p95 0.65 ms instead of 0.25 ms with fillers spinning. Starting them 1 ms after the last touch
 * instead lost the whole gain for large batches (the first millisecond of a halt is enough). So
 * the caller decides which work warrants a window: the server touches after answering requests
 * of at least IDLEPOLL_MIN_SAMPLES samples (server.c), not after small ones. */
#include "idlepoll.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct spine_idlepoll {
    uint64_t window_ns;
    _Atomic uint64_t last;  /* spine_now_ns of the last touch */
    atomic_int sleeping;    /* fillers waiting on wake */
    _Atomic uint64_t spins; /* rounds of 256 pauses, all fillers together */
    atomic_bool stop;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    int n;
    int *cpu;
    pthread_t *th;
};

typedef struct filler_arg {
    spine_idlepoll *ip;
    int cpu;
    int ok; /* 1 once pinned and at SCHED_IDLE, -1 if refused */
    pthread_mutex_t *mu;
    pthread_cond_t *ready;
} filler_arg;

/* nanoseconds since the last touch (0 if it is being written now) */
static uint64_t since_touch(spine_idlepoll *ip) {
    uint64_t last = atomic_load(&ip->last);
    uint64_t now = spine_now_ns();
    return now > last ? now - last : 0;
}

static void *filler(void *varg) {
    filler_arg *a = varg;
    spine_idlepoll *ip = a->ip;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(a->cpu, &set);
    struct sched_param sp = {0};
    pthread_setname_np(pthread_self(), "idlepoll"); /* apart from the engine's in top and /proc */
    int ok = pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0 &&
                     pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp) == 0
                 ? 1
                 : -1;
    pthread_mutex_lock(a->mu);
    a->ok = ok;
    pthread_cond_signal(a->ready);
    pthread_mutex_unlock(a->mu);
    if (ok < 0) return NULL; /* a is the starter's and may be gone from here on */
    while (!atomic_load(&ip->stop)) {
        if (since_touch(ip) < ip->window_ns) {
            for (int i = 0; i < 256; i++) __builtin_ia32_pause();
            atomic_fetch_add_explicit(&ip->spins, 1, memory_order_relaxed);
            continue;
        }
        pthread_mutex_lock(&ip->mu);
        atomic_fetch_add(&ip->sleeping, 1); /* seq_cst: a touch after this sees it */
        while (!atomic_load(&ip->stop) && since_touch(ip) >= ip->window_ns)
            pthread_cond_wait(&ip->wake, &ip->mu);
        atomic_fetch_sub(&ip->sleeping, 1);
        pthread_mutex_unlock(&ip->mu);
    }
    return NULL;
}

void spine_idlepoll_touch(spine_idlepoll *ip) {
    if (!ip) return;
    atomic_store(&ip->last, spine_now_ns()); /* seq_cst, against the fillers' sleeping count */
    if (atomic_load(&ip->sleeping) > 0) {
        pthread_mutex_lock(&ip->mu);
        pthread_cond_broadcast(&ip->wake);
        pthread_mutex_unlock(&ip->mu);
    }
}

void spine_idlepoll_stop(spine_idlepoll *ip) {
    if (!ip) return;
    pthread_mutex_lock(&ip->mu);
    atomic_store(&ip->stop, true);
    pthread_cond_broadcast(&ip->wake);
    pthread_mutex_unlock(&ip->mu);
    for (int i = 0; i < ip->n; i++) pthread_join(ip->th[i], NULL);
    pthread_mutex_destroy(&ip->mu);
    pthread_cond_destroy(&ip->wake);
    free(ip->cpu);
    free(ip->th);
    free(ip);
}

spine_status spine_idlepoll_start(double window_ms, int max_cpus, spine_idlepoll **out,
                                  spine_error *err) {
    *out = NULL;
    if (!(window_ms > 0 && window_ms <= 60e3))
        return spine_fail(err, SPINE_ERR_INVALID, "idle poll: window %g ms outside (0, 60000]",
                          window_ms);
    if (max_cpus < 1)
        return spine_fail(err, SPINE_ERR_INVALID, "idle poll: at most %d CPUs", max_cpus);
    cpu_set_t mask;
    if (sched_getaffinity(0, sizeof mask, &mask) != 0)
        return spine_fail(err, SPINE_ERR_IO, "idle poll: cannot read the CPU affinity: %s",
                          strerror(errno));
    int ncpu = CPU_COUNT(&mask) < max_cpus ? CPU_COUNT(&mask) : max_cpus;
    spine_idlepoll *ip = calloc(1, sizeof *ip);
    if (!ip) return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    ip->window_ns = (uint64_t)(window_ms * 1e6);
    ip->cpu = calloc((size_t)ncpu, sizeof *ip->cpu);
    ip->th = calloc((size_t)ncpu, sizeof *ip->th);
    pthread_mutex_init(&ip->mu, NULL);
    pthread_cond_init(&ip->wake, NULL);
    if (!ip->cpu || !ip->th) {
        spine_idlepoll_stop(ip);
        return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    }
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t ready = PTHREAD_COND_INITIALIZER;
    for (int c = 0; c < CPU_SETSIZE && ip->n < ncpu; c++) {
        if (!CPU_ISSET(c, &mask)) continue;
        filler_arg a = {ip, c, 0, &mu, &ready};
        if (pthread_create(&ip->th[ip->n], NULL, filler, &a) != 0) {
            spine_idlepoll_stop(ip);
            return spine_fail(err, SPINE_ERR_NOMEM, "idle poll: cannot start a thread");
        }
        pthread_mutex_lock(&mu);
        while (!a.ok) pthread_cond_wait(&ready, &mu);
        pthread_mutex_unlock(&mu);
        ip->cpu[ip->n++] = c;
        if (a.ok < 0) {
            spine_idlepoll_stop(ip);
            return spine_fail(err, SPINE_ERR_IO,
                              "idle poll: cannot pin a thread to CPU %d at SCHED_IDLE", c);
        }
    }
    *out = ip;
    return SPINE_OK;
}

int spine_idlepoll_cpus(const spine_idlepoll *ip, char *list, size_t cap) {
    if (cap) list[0] = 0;
    if (!ip) return 0;
    size_t len = 0;
    for (int i = 0; i < ip->n && len < cap; i++) {
        int j = i;
        while (j + 1 < ip->n && ip->cpu[j + 1] == ip->cpu[j] + 1) j++;
        int w = j > i ? snprintf(list + len, cap - len, "%s%d-%d", len ? "," : "", ip->cpu[i],
                                 ip->cpu[j])
                      : snprintf(list + len, cap - len, "%s%d", len ? "," : "", ip->cpu[i]);
        if (w < 0) break;
        len += (size_t)w;
        i = j;
    }
    return ip->n;
}

void spine_idlepoll_stats(const spine_idlepoll *ip, uint64_t *spins, int *sleeping) {
    *spins = ip ? atomic_load_explicit(&ip->spins, memory_order_relaxed) : 0;
    *sleeping = ip ? atomic_load(&ip->sleeping) : 0;
}
