/* serve.h: the server's internal pieces and how they meet.
 *   metrics.c  counters and histograms, Prometheus exposition, the recent-latency window
 *   batcher.c  the request queue, dynamic batching (merge small, split large), deadlines,
 *              worker instances each with its own inference context and thread pool
 *   server.c   HTTP (libmicrohttpd): routes, limits, suspend/resume, drain, reload
 * A served model is reference counted: requests and running batches hold it, so a reload
 * swaps the current pointer and the old model lives until its last batch is answered. */
#ifndef SPINE_SERVE_H
#define SPINE_SERVE_H

#include "../moe/moe.h"
#include "protocol.h"

#include <pthread.h>
#include <stdatomic.h>

/* ---- metrics ---- */
#define HIST_BUCKETS 20
typedef struct histogram {
    int n;
    double le[HIST_BUCKETS]; /* upper bounds; +Inf is implicit */
    atomic_uint_fast64_t count[HIST_BUCKETS + 1];
    _Atomic double sum;
} histogram;

typedef enum fail_reason {
    FAIL_BAD_REQUEST,
    FAIL_NOT_FOUND,
    FAIL_TOO_LARGE,
    FAIL_OVERLOAD,
    FAIL_DEADLINE,
    FAIL_INTERNAL,
    FAIL_COUNT
} fail_reason;

typedef struct metrics {
    atomic_uint_fast64_t requests, inferences, batches, failures[FAIL_COUNT];
    atomic_int queue_requests, queue_samples, inflight;
    histogram batch_size, queue_s, compute_s, total_s;
    pthread_mutex_t window_mu; /* the last WINDOW request latencies, for the dashboard */
#define WINDOW 4096
    double window[WINDOW];
    double window_t[WINDOW];
    uint32_t window_samples[WINDOW]; /* samples answered (0 for a failure) */
    uint64_t window_n;
} metrics;

void metrics_init(metrics *m, double sla_s, int max_batch);
void hist_observe(histogram *h, double v);
void metrics_request_done(metrics *m, double total_s, uint32_t samples);
const char *fail_reason_name(fail_reason r);

/* ---- models ---- */
/* An MoE language model: one context, requests run one at a time on its own pool (no dynamic
 * batching across requests yet), at most MOE_SERVE_MAX_BATCH sequences of MOE_SERVE_MAX_SEQ
 * positions (prompt + generated) per request. */
#define MOE_SERVE_MAX_BATCH 8
#define MOE_SERVE_MAX_SEQ 1024
typedef struct moe_served {
    moe_model *model;
    moe_ctx *ctx;
    spine_pool *pool;
    pthread_mutex_t mu;
    int max_seq;
    struct moe_placement *placement; /* owned, or NULL */
    int n_placement;
    /* counters for /metrics, copied after each request (a scrape never waits for one) */
    pthread_mutex_t stats_mu;
    moe_tier_stats snap;
    uint64_t *group_snap;
    int ngroups;
    atomic_uint_fast64_t requests, tokens_in, tokens_out;
} moe_served;

typedef struct served_model {
    char name[64];
    spine_model *m;  /* a DLRM, or NULL for an MoE model */
    moe_served *moe; /* an MoE model, or NULL */
    atomic_int refs;
    uint64_t generation; /* 1 for the first load, +1 per reload */
} served_model;

void served_model_release(served_model *sm);

/* ---- requests and the batcher ---- */
typedef struct request request;
typedef void (*request_done_fn)(request *rq); /* called once, by the thread finishing it */

struct request {
    served_model *sm;
    infer_request in;
    float *out;
    double t_arrival, deadline;
    atomic_int parts_left;
    atomic_int failed; /* 0, or an HTTP status */
    char fail_msg[sizeof(((spine_error *)0)->msg)];
    fail_reason reason;
    request_done_fn done;
    void *done_arg;
};

typedef struct batcher_opts {
    int workers, threads, max_batch, max_queue;
    double max_delay_s;
    int inline_max; /* requests of at most this many samples may run on the receiving thread */
} batcher_opts;

typedef struct batcher batcher;
spine_status batcher_start(const batcher_opts *o, metrics *mx, batcher **out, spine_error *err);
/* Queue a decoded request (split into parts of at most max_batch). Refuses with 503 (sets
 * rq->failed and returns false) when the queue is full or the deadline cannot be met. */
bool batcher_submit(batcher *b, request *rq);
/* Why a request of `samples` with this deadline would be refused if submitted now (queue
 * full, deadline out of reach given the work ahead, shutting down), or NULL. The server asks
 * before it decodes a request's indices, so that overload costs a refusal, not a decode; submit
 * checks again. */
const char *batcher_refusal(batcher *b, double deadline, int64_t samples, fail_reason *reason);
/* Run a small request (at most inline_max samples) at once on the calling thread, with the
 * context of an idle worker, when nothing is queued: no queue hand-off and no wake-ups. True
 * when it ran (rq->out written, or rq->failed set); false: submit it instead. */
bool batcher_run_inline(batcher *b, request *rq);
/* Stop after the queue is empty (drain) and join the workers. */
void batcher_stop(batcher *b);
/* samples/s the workers have been sustaining (0 before the first batches). */
double batcher_rate(const batcher *b);

#endif
