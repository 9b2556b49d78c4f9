/* batcher.c: the request queue and the worker instances.
 *
 * A request of B samples becomes ceil(B / max_batch) parts. Workers take parts from the head
 * of the queue, merging consecutive parts of the same model up to max_batch samples, waiting
 * at most max_delay after the oldest part arrived for more to come, and only while a part of
 * the usual size (a running mean) would still fit: small queries merge, large ones run as
 * sub-batches on several workers at once (DeepRecSys), and a query that no typical one could
 * join does not wait for one. Each worker owns an inference context and a pool of `threads`
 * threads. Deadlines are held against the measured service rate: a request whose deadline cannot
 * be met given the work ahead of it (the queue, and what the busy workers have left of their
 * batches) is refused 503 on arrival (the server asks before it decodes the indices, and submit
 * again); a part that can no longer finish by its deadline when a worker takes it (its deadline
 * passed while queued, or its batch would end past it) is answered 503 then, instead of running
 * late on time the parts behind it need. The queue holds at most max_queue requests. Overload
 * therefore degrades into fast refusals. */
#include "serve.h"

#include "../moe/moe_trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct part {
    request *rq;
    int32_t s0, s1;  /* samples [s0, s1) of the request */
    int64_t *vstart; /* per table: first value of this part (T entries) */
    int64_t *vcount; /* per table: how many values */
    struct part *next;
} part;

typedef struct worker {
    batcher *b;
    pthread_t th;
    spine_pool *pool;
    spine_ctx *ctx;
    served_model *ctx_model;
    /* merge scratch, grown on demand and kept */
    float *dense, *out, *weights;
    int32_t *lengths;
    int64_t *values;
    size_t dense_cap, values_cap, lengths_cap;
    bool idle;           /* waiting for work (under the batcher's mu) */
    bool lent;           /* its context is running a request inline on another thread */
    double run_t0;       /* when its running batch started (under mu) */
    int64_t run_samples; /* samples of that batch, 0 while it runs none (under mu) */
} worker;

struct batcher {
    batcher_opts o;
    metrics *mx;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    part *head, *tail;
    int queued_requests;
    int64_t queued_samples;
    bool stopping;
    worker *w;
    int lent;            /* workers lent out for inline runs */
    double mean_part;    /* samples per queued part, running mean (0 before the first) */
    _Atomic double rate; /* samples/s per worker, EWMA */
};

void served_model_release(served_model *sm) {
    if (sm && atomic_fetch_sub(&sm->refs, 1) == 1) {
        spine_model_free(sm->m);
        if (sm->moe) {
            moe_ctx_free(sm->moe->ctx);
            moe_model_free(sm->moe->model);
            spine_pool_free(sm->moe->pool);
            pthread_mutex_destroy(&sm->moe->mu);
            moe_placements_free(sm->moe->placement, sm->moe->n_placement);
            pthread_mutex_destroy(&sm->moe->stats_mu);
            free(sm->moe->group_snap);
            free(sm->moe);
        }
        free(sm);
    }
}

double batcher_rate(const batcher *b) {
    return atomic_load(&b->rate) * b->o.workers;
}

static void finish_part(batcher *b, part *p) {
    request *rq = p->rq;
    free(p->vstart);
    free(p);
    (void)b;
    if (atomic_fetch_sub(&rq->parts_left, 1) == 1) rq->done(rq);
}

static void fail_part(batcher *b, part *p, int status, fail_reason reason, const char *msg) {
    request *rq = p->rq;
    int expected = 0;
    if (atomic_compare_exchange_strong(&rq->failed, &expected, status)) {
        snprintf(rq->fail_msg, sizeof rq->fail_msg, "%s", msg);
        rq->reason = reason;
    }
    finish_part(b, p);
}

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t n = SPINE_MAX(need, *cap * 2);
    void *q = realloc(*p, n * elem);
    if (!q) return false;
    *p = q;
    *cap = n;
    return true;
}

/* Statistics of one batch run, and the service rate admission control uses. */
static void account(batcher *b, int64_t samples, double dt) {
    hist_observe(&b->mx->compute_s, dt);
    hist_observe(&b->mx->batch_size, (double)samples);
    atomic_fetch_add(&b->mx->batches, 1);
    atomic_fetch_add(&b->mx->inferences, (uint64_t)samples);
    double r = atomic_load(&b->rate), now_rate = (double)samples / SPINE_MAX(dt, 1e-7);
    atomic_store(&b->rate, r == 0 ? now_rate : 0.9 * r + 0.1 * now_rate);
}

/* The worker's context for model sm: kept while the model stays, made anew after a reload. */
static spine_status worker_ctx(worker *w, served_model *sm, spine_error *err) {
    if (w->ctx_model == sm && w->ctx) return SPINE_OK;
    spine_ctx_free(w->ctx);
    w->ctx = NULL;
    if (w->ctx_model) served_model_release(w->ctx_model);
    atomic_fetch_add(&sm->refs, 1);
    w->ctx_model = sm;
    return spine_ctx_create(sm->m, w->b->o.max_batch, w->pool, &w->ctx, err);
}

/* One whole request of at most max_batch samples, in place: no merge copy. */
static spine_status run_whole(worker *w, request *rq, spine_error *err) {
    spine_batch whole = {rq->in.batch, rq->in.dense, rq->in.lengths, rq->in.values, rq->in.weights};
    double t0 = spine_now();
    hist_observe(&w->b->mx->queue_s, t0 - rq->t_arrival);
    spine_status st = spine_ctx_run(w->ctx, &whole, rq->out, 0, err);
    account(w->b, rq->in.batch, spine_now() - t0);
    return st;
}

bool batcher_run_inline(batcher *b, request *rq) {
    if (rq->in.batch > b->o.inline_max || rq->in.batch > b->o.max_batch) return false;
    pthread_mutex_lock(&b->mu);
    worker *w = NULL;
    if (!b->head && !b->stopping)
        for (int i = 0; i < b->o.workers && !w; i++)
            if (b->w[i].idle && !b->w[i].lent) w = &b->w[i];
    if (w) {
        w->lent = true;
        b->lent++;
    }
    pthread_mutex_unlock(&b->mu);
    if (!w) return false;
    spine_error err = {0};
    spine_status st = worker_ctx(w, rq->sm, &err);
    if (!st) st = run_whole(w, rq, &err);
    if (st) {
        atomic_store(&rq->failed, 500);
        snprintf(rq->fail_msg, sizeof rq->fail_msg, "%s", err.msg);
        rq->reason = FAIL_INTERNAL;
    }
    pthread_mutex_lock(&b->mu);
    w->lent = false;
    b->lent--;
    pthread_cond_broadcast(&b->cv); /* work queued meanwhile, or a stop waiting for it back */
    pthread_mutex_unlock(&b->mu);
    return true;
}

/* Merge parts into the worker's scratch as one KJT batch and run it. */
static void run_parts(worker *w, part **ps, int np, int64_t samples) {
    batcher *b = w->b;
    served_model *sm = ps[0]->rq->sm;
    const spine_model_desc *d = spine_model_describe(sm->m);
    const int T = d->num_tables;
    spine_error err = {0};
    if (worker_ctx(w, sm, &err)) {
        for (int i = 0; i < np; i++) fail_part(b, ps[i], 500, FAIL_INTERNAL, err.msg);
        return;
    }
    if (np == 1 && ps[0]->s0 == 0 && ps[0]->s1 == ps[0]->rq->in.batch) {
        /* the batch is one whole request: run it in place, no merge copy */
        request *rq = ps[0]->rq;
        spine_status st = run_whole(w, rq, &err);
        if (st)
            fail_part(b, ps[0], 500, FAIL_INTERNAL, err.msg);
        else
            finish_part(b, ps[0]);
        return;
    }
    int64_t nvalues = 0;
    bool weighted = false;
    for (int i = 0; i < np; i++) {
        for (int t = 0; t < T; t++) nvalues += ps[i]->vcount[t];
        weighted |= ps[i]->rq->in.weights != NULL;
    }
    size_t wcap = w->values_cap;
    if (!grow((void **)&w->dense, &w->dense_cap, (size_t)samples * (size_t)d->num_dense, 4) ||
        !grow((void **)&w->lengths, &w->lengths_cap, (size_t)samples * (size_t)T, 4) ||
        !grow((void **)&w->values, &w->values_cap, (size_t)nvalues + 1, 8) ||
        (w->values_cap != wcap && !(w->weights = realloc(w->weights, w->values_cap * 4)))) {
        for (int i = 0; i < np; i++) fail_part(b, ps[i], 500, FAIL_INTERNAL, "out of memory");
        return;
    }
    /* dense rows and outputs in part order; lengths and values table-major */
    int64_t row = 0;
    for (int i = 0; i < np; i++) {
        const part *p = ps[i];
        size_t nd = (size_t)d->num_dense;
        memcpy(w->dense + (size_t)row * nd, p->rq->in.dense + (size_t)p->s0 * nd,
               (size_t)(p->s1 - p->s0) * nd * 4);
        row += p->s1 - p->s0;
    }
    int64_t vk = 0;
    for (int t = 0; t < T; t++) {
        int64_t lk = (int64_t)t * samples;
        for (int i = 0; i < np; i++) {
            const part *p = ps[i];
            const infer_request *in = &p->rq->in;
            memcpy(w->lengths + lk, in->lengths + (size_t)t * (size_t)in->batch + (size_t)p->s0,
                   (size_t)(p->s1 - p->s0) * 4);
            lk += p->s1 - p->s0;
            memcpy(w->values + vk, in->values + p->vstart[t], (size_t)p->vcount[t] * 8);
            if (weighted) {
                if (in->weights)
                    memcpy(w->weights + vk, in->weights + p->vstart[t], (size_t)p->vcount[t] * 4);
                else
                    for (int64_t k = 0; k < p->vcount[t]; k++) w->weights[vk + k] = 1.0f;
            }
            vk += p->vcount[t];
        }
    }
    float *out = w->out; /* max_batch floats, allocated with the worker */
    spine_batch batch = {(int32_t)samples, w->dense, w->lengths, w->values,
                         weighted ? w->weights : NULL};
    double t0 = spine_now();
    for (int i = 0; i < np; i++) hist_observe(&b->mx->queue_s, t0 - ps[i]->rq->t_arrival);
    spine_status st = spine_ctx_run(w->ctx, &batch, out, 0, &err);
    account(b, samples, spine_now() - t0);
    row = 0;
    for (int i = 0; i < np; i++) {
        part *p = ps[i];
        if (st) {
            fail_part(b, p, 500, FAIL_INTERNAL, err.msg);
            continue;
        }
        memcpy(p->rq->out + p->s0, out + row, (size_t)(p->s1 - p->s0) * 4);
        row += p->s1 - p->s0;
        finish_part(b, p);
    }
}

static void *worker_main(void *arg) {
    worker *w = arg;
    batcher *b = w->b;
    part **ps = malloc((size_t)b->o.max_batch * sizeof *ps);
    if (!ps) return NULL;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        w->idle = true;
        while ((!b->head || w->lent) && !b->stopping) pthread_cond_wait(&b->cv, &b->mu);
        w->idle = false;
        while (w->lent) pthread_cond_wait(&b->cv, &b->mu); /* stopping: wait for it back */
        if (!b->head && b->stopping) break;
        /* the batching window: wait for max_batch samples or max_delay past the oldest */
        double until = b->head->rq->t_arrival + b->o.max_delay_s;
        while (!b->stopping && b->head && b->queued_samples < b->o.max_batch &&
               (double)b->queued_samples + b->mean_part <= (double)b->o.max_batch &&
               spine_now() < until) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            double wait = until - spine_now();
            if (wait <= 0) break;
            long ns = ts.tv_nsec + (long)(wait * 1e9);
            ts.tv_sec += ns / 1000000000L;
            ts.tv_nsec = ns % 1000000000L;
            pthread_cond_timedwait(&b->cv, &b->mu, &ts);
        }
        if (!b->head) continue;
        served_model *sm = b->head->rq->sm;
        int np = 0;
        int64_t samples = 0;
        while (b->head && b->head->rq->sm == sm && np < b->o.max_batch &&
               (np == 0 || samples + (b->head->s1 - b->head->s0) <= b->o.max_batch)) {
            part *p = b->head;
            b->head = p->next;
            if (!b->head) b->tail = NULL;
            samples += p->s1 - p->s0;
            if (p->s0 == 0)
                b->queued_requests--; /* a request leaves the queue with its first part */
            ps[np++] = p;
        }
        b->queued_samples -= samples;
        w->run_t0 = spine_now();
        w->run_samples = samples;
        atomic_store(&b->mx->queue_requests, b->queued_requests);
        atomic_store(&b->mx->queue_samples, (int)b->queued_samples);
        if (b->head) pthread_cond_signal(&b->cv); /* more work for another worker */
        pthread_mutex_unlock(&b->mu);
        /* parts that cannot finish by their deadline: refuse them now. The batch of those
         * still due would end at `done`; a part due before then would answer late. */
        double now = spine_now(), rate = atomic_load(&b->rate);
        int64_t due = 0;
        for (int i = 0; i < np; i++)
            if (now <= ps[i]->rq->deadline) due += ps[i]->s1 - ps[i]->s0;
        double done = rate > 0 ? now + (double)due / rate : now;
        int k = 0;
        int64_t live = 0;
        for (int i = 0; i < np; i++) {
            if (done > ps[i]->rq->deadline) {
                fail_part(b, ps[i], 503, FAIL_DEADLINE,
                          now > ps[i]->rq->deadline
                              ? "deadline passed while queued"
                              : "cannot meet the deadline: its batch would end past it");
            } else {
                live += ps[i]->s1 - ps[i]->s0;
                ps[k++] = ps[i];
            }
        }
        if (k) run_parts(w, ps, k, live);
        pthread_mutex_lock(&b->mu);
        w->run_samples = 0;
    }
    pthread_mutex_unlock(&b->mu);
    free(ps);
    return NULL;
}

/* Why a request of `samples` with this deadline would be refused now, or NULL (b->mu held).
 * The work ahead of it: the queued samples, and what each busy worker has left of its batch at
 * the measured rate (ignoring that, a request arriving as a batch starts was admitted a batch
 * time too optimistically, and then answered late or dropped from the queue). */
static const char *refusal(const batcher *b, double deadline, int64_t samples,
                           fail_reason *reason) {
    *reason = FAIL_OVERLOAD;
    double rate = atomic_load(&b->rate), now = spine_now();
    if (b->stopping) return "the server is shutting down";
    if (b->queued_requests >= b->o.max_queue) return "queue full";
    if (rate > 0) {
        double ahead = (double)(b->queued_samples + samples);
        for (int i = 0; i < b->o.workers; i++)
            if (b->w[i].run_samples > 0)
                ahead +=
                    SPINE_MAX(0.0, (double)b->w[i].run_samples - (now - b->w[i].run_t0) * rate);
        if (now + ahead / (rate * b->o.workers) > deadline) {
            *reason = FAIL_DEADLINE;
            return "cannot meet the deadline with the work ahead";
        }
    }
    return NULL;
}

const char *batcher_refusal(batcher *b, double deadline, int64_t samples, fail_reason *reason) {
    pthread_mutex_lock(&b->mu);
    const char *why = refusal(b, deadline, samples, reason);
    pthread_mutex_unlock(&b->mu);
    return why;
}

bool batcher_submit(batcher *b, request *rq) {
    const spine_model_desc *d = spine_model_describe(rq->sm->m);
    const int T = d->num_tables;
    const int32_t B = rq->in.batch, mb = b->o.max_batch;
    int nparts = (B + mb - 1) / mb;
    part *first = NULL, *last = NULL;
    /* per-table start of each part's values */
    int64_t *tstart = malloc((size_t)T * sizeof *tstart);
    if (!tstart) goto nomem;
    int64_t acc = 0;
    for (int t = 0; t < T; t++) {
        tstart[t] = acc;
        for (int32_t i = 0; i < B; i++) acc += rq->in.lengths[(size_t)t * B + i];
    }
    for (int k = 0; k < nparts; k++) {
        part *p = calloc(1, sizeof *p);
        if (!p || !(p->vstart = malloc(2 * (size_t)T * sizeof *p->vstart))) {
            free(p);
            goto nomem;
        }
        p->vcount = p->vstart + T;
        p->rq = rq;
        p->s0 = k * mb;
        p->s1 = SPINE_MIN(B, p->s0 + mb);
        for (int t = 0; t < T; t++) {
            int64_t c = 0;
            for (int32_t i = p->s0; i < p->s1; i++) c += rq->in.lengths[(size_t)t * B + i];
            p->vstart[t] = tstart[t];
            p->vcount[t] = c;
            tstart[t] += c;
        }
        if (last)
            last->next = p;
        else
            first = p;
        last = p;
    }
    free(tstart);
    tstart = NULL;
    atomic_store(&rq->parts_left, nparts);
    pthread_mutex_lock(&b->mu);
    fail_reason reason;
    const char *why = refusal(b, rq->deadline, B, &reason);
    if (why) {
        pthread_mutex_unlock(&b->mu);
        while (first) {
            part *n = first->next;
            free(first->vstart);
            free(first);
            first = n;
        }
        atomic_store(&rq->failed, 503);
        snprintf(rq->fail_msg, sizeof rq->fail_msg, "%s", why);
        rq->reason = reason;
        return false;
    }
    if (b->tail)
        b->tail->next = first;
    else
        b->head = first;
    b->tail = last;
    b->queued_requests++;
    b->queued_samples += B;
    for (part *p = first; p; p = p->next) { /* the usual part size, for the batching window */
        double n = (double)(p->s1 - p->s0);
        b->mean_part = b->mean_part == 0 ? n : 0.9 * b->mean_part + 0.1 * n;
    }
    atomic_store(&b->mx->queue_requests, b->queued_requests);
    atomic_store(&b->mx->queue_samples, (int)b->queued_samples);
    if (nparts > 1 || b->lent) /* a lent worker may take the signal and ignore it */
        pthread_cond_broadcast(&b->cv);
    else
        pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    return true;
nomem:
    free(tstart);
    while (first) {
        part *n = first->next;
        free(first->vstart);
        free(first);
        first = n;
    }
    atomic_store(&rq->failed, 500);
    snprintf(rq->fail_msg, sizeof rq->fail_msg, "out of memory");
    rq->reason = FAIL_INTERNAL;
    return false;
}

spine_status batcher_start(const batcher_opts *o, metrics *mx, batcher **out, spine_error *err) {
    *out = NULL;
    if (o->workers < 1 || o->workers > 256 || o->threads < 1 || o->max_batch < 1 ||
        o->max_queue < 1)
        return spine_fail(err, SPINE_ERR_INVALID, "bad batcher options");
    batcher *b = calloc(1, sizeof *b);
    if (!b) return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    b->o = *o;
    b->mx = mx;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    b->w = calloc((size_t)o->workers, sizeof *b->w);
    if (!b->w) {
        free(b);
        return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < o->workers; i++) {
        worker *w = &b->w[i];
        w->b = b;
        if (!(w->out = malloc((size_t)o->max_batch * sizeof *w->out)) ||
            spine_pool_create(o->threads, &w->pool, err) ||
            pthread_create(&w->th, NULL, worker_main, w) != 0) {
            b->o.workers = i; /* stop the ones started */
            spine_pool_free(w->pool);
            free(w->out);
            batcher_stop(b);
            return err && err->code ? err->code
                                    : spine_fail(err, SPINE_ERR_NOMEM, "cannot start a worker");
        }
    }
    *out = b;
    return SPINE_OK;
}

void batcher_stop(batcher *b) {
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    b->stopping = true;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    for (int i = 0; i < b->o.workers; i++) {
        worker *w = &b->w[i];
        pthread_join(w->th, NULL);
        spine_ctx_free(w->ctx);
        served_model_release(w->ctx_model);
        spine_pool_free(w->pool);
        free(w->dense);
        free(w->out);
        free(w->lengths);
        free(w->values);
        free(w->weights);
    }
    free(b->w);
    free(b);
}
