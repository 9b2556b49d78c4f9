/* pool.c: the thread pool: persistent workers, an atomic task counter, spin-then-sleep. */
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#define SPIN_NS 200000ull /* how long an idle worker spins before sleeping */

struct spine_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    pthread_mutex_t run_mu; /* one region at a time */
    /* the current region */
    spine_task_fn fn;
    void *arg;
    int ntasks;
    atomic_int next;
    atomic_int acked; /* workers done with the current generation */
    atomic_uint_fast64_t generation;
    int sleepers;
    bool stop;
};

typedef struct worker_arg {
    spine_pool *pool;
    int id;
} worker_arg;

static void drain(spine_pool *p, int thread) {
    for (;;) {
        int t = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (t >= p->ntasks) break;
        p->fn(p->arg, t, thread);
    }
}

static void *worker_main(void *varg) {
    worker_arg wa = *(worker_arg *)varg;
    free(varg);
    spine_pool *p = wa.pool;
    uint64_t seen = 0;
    for (;;) {
        uint64_t g = atomic_load_explicit(&p->generation, memory_order_acquire);
        if (g == seen) {
            uint64_t t0 = spine_now_ns();
            while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen &&
                   spine_now_ns() - t0 < SPIN_NS)
                __builtin_ia32_pause();
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            p->sleepers++;
            while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen &&
                   !p->stop)
                pthread_cond_wait(&p->wake, &p->mu);
            p->sleepers--;
            bool stop = p->stop;
            pthread_mutex_unlock(&p->mu);
            if (stop) return NULL;
        }
        seen = g;
        drain(p, wa.id);
        /* The caller returns only after every worker has acknowledged, so no worker is ever
         * inside drain() while the next region's fields are written. */
        atomic_fetch_add_explicit(&p->acked, 1, memory_order_release);
    }
}

spine_status spine_pool_create(int nthreads, spine_pool **out, spine_error *err) {
    *out = NULL;
    if (nthreads < 1 || nthreads > 1024)
        return spine_fail(err, SPINE_ERR_INVALID, "thread count %d outside 1..1024", nthreads);
    spine_pool *p = calloc(1, sizeof *p);
    if (!p) return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    p->n = nthreads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->run_mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    p->threads = calloc((size_t)nthreads, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    }
    for (int i = 1; i < nthreads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) *wa = (worker_arg){p, i}; /* before the thread starts: it frees wa */
        if (!wa || pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            p->n = i;
            spine_pool_free(p);
            return spine_fail(err, SPINE_ERR_NOMEM, "cannot start thread %d", i);
        }
    }
    *out = p;
    return SPINE_OK;
}

void spine_pool_free(spine_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->run_mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p);
}

int spine_pool_size(const spine_pool *p) {
    return p ? p->n : 1;
}

void spine_pool_run(spine_pool *p, int ntasks, spine_task_fn fn, void *arg) {
    if (ntasks <= 0) return;
    if (!p || p->n == 1 || ntasks == 1) {
        for (int t = 0; t < ntasks; t++) fn(arg, t, 0);
        return;
    }
    pthread_mutex_lock(&p->run_mu);
    p->fn = fn;
    p->arg = arg;
    p->ntasks = ntasks;
    atomic_store_explicit(&p->acked, 0, memory_order_relaxed);
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_mutex_lock(&p->mu);
    if (p->sleepers) pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    drain(p, 0);
    unsigned n = 0;
    while (atomic_load_explicit(&p->acked, memory_order_acquire) < p->n - 1) spine_wait_step(&n);
    pthread_mutex_unlock(&p->run_mu);
}
