/* server.c: the HTTP side of `spine serve`: libmicrohttpd with an epoll thread pool, the Open
 * Inference Protocol routes, body and connection limits, suspend/resume around the batcher,
 * Prometheus metrics, drain on SIGTERM, reload on SIGHUP or POST .../load. */
#include "server.h"

#include "../base/idlepoll.h"
#include "../base/json.h"
#include "../model/dlrm.h"
#include "dashboard.h"
#include "protocol_moe.h"
#include "../moe/moe_trace.h"

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#define MAX_SLOTS 16

typedef struct slot {
    char name[64];
    char dir[4096]; /* "" for the built-in default model */
    served_model *cur;
} slot;

/* requests of at least this many samples keep the CPUs awake after their answer (--idle-poll-ms) */
#define IDLEPOLL_MIN_SAMPLES 32

typedef struct server {
    server_opts o;
    struct MHD_Daemon *d;
    batcher *b;
    metrics mx;
    pthread_mutex_t mu; /* slots */
    slot slots[MAX_SLOTS];
    int nslots;
    atomic_bool draining;
    double started;
    spine_idlepoll *ip; /* keeps the CPUs awake between requests; NULL when off */
} server;

typedef struct conn {
    spine_buf body;
    bool too_large;
    request *rq; /* an infer request in flight (suspended connection) */
    struct MHD_Connection *c;
} conn;

/* ---- models ---- */

/* A folder holds an MoE model when its config.json has MoE keys (num_local_experts). */
static bool is_moe_folder(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *text = NULL;
    size_t len = 0;
    if (spine_read_file(path, (size_t)1 << 20, &text, &len, NULL)) return false;
    json_doc d;
    bool moe = false;
    if (!json_parse_limited(&d, text, len, 100000, NULL)) {
        moe = json_root(&d)->type == JSON_OBJECT &&
              json_obj_get(&d, json_root(&d), "num_local_experts") != NULL;
        json_free(&d);
    }
    free(text);
    return moe;
}

static spine_status load_moe(const char *dir, const server_opts *o, moe_served **out,
                             spine_error *err) {
    moe_served *ms = calloc(1, sizeof *ms);
    if (!ms) return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&ms->mu, NULL);
    pthread_mutex_init(&ms->stats_mu, NULL);
    spine_status st = moe_model_load(dir, SPINE_PLACE_AUTO, &ms->model, err);
    if (!st) st = spine_pool_create(o->threads > 0 ? o->threads : 1, &ms->pool, err);
    if (!st && o->expert_placement) {
        char *text = NULL;
        size_t len = 0;
        st = spine_read_file(o->expert_placement, (size_t)64 << 20, &text, &len, err);
        if (!st) st = moe_placement_parse(text, len, &ms->placement, &ms->n_placement, err);
        if (st) spine_error_prefix(err, "%s: ", o->expert_placement);
        free(text);
    }
    if (!st) {
        ms->max_seq = SPINE_MIN(MOE_SERVE_MAX_SEQ, ms->model->c.max_pos);
        if (ms->model->c.sliding_window > 0)
            ms->max_seq = SPINE_MIN(ms->max_seq, ms->model->c.sliding_window);
        int slots = o->expert_slots;
        if (o->expert_budget && !(slots = moe_slots_for_budget(ms->model, o->expert_budget)))
            st = spine_fail(err, SPINE_ERR_INVALID,
                            "--expert-budget %llu bytes holds less than one expert per MoE layer",
                            (unsigned long long)o->expert_budget);
        moe_run_opts ro = {.max_batch = MOE_SERVE_MAX_BATCH,
                           .max_seq = ms->max_seq,
                           .expert_slots = slots,
                           .expert_policy = o->expert_policy,
                           .slow_gbps =
                               o->slow_gbps < 0 ? moe_default_slow_gbps(ms->model) : o->slow_gbps,
                           .expert_prefetch = o->expert_prefetch,
                           .placement = ms->placement,
                           .n_placement = ms->n_placement};
        if (!st) st = moe_ctx_create(ms->model, &ro, ms->pool, &ms->ctx, err);
    }
    if (!st) {
        moe_ctx_group_rows(ms->ctx, &ms->ngroups);
        ms->group_snap = calloc((size_t)SPINE_MAX(ms->ngroups, 1), sizeof *ms->group_snap);
        if (!ms->group_snap) st = spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    }
    if (st) {
        moe_ctx_free(ms->ctx);
        moe_model_free(ms->model);
        spine_pool_free(ms->pool);
        pthread_mutex_destroy(&ms->mu);
        pthread_mutex_destroy(&ms->stats_mu);
        moe_placements_free(ms->placement, ms->n_placement);
        free(ms->group_snap);
        free(ms);
        return st;
    }
    *out = ms;
    return SPINE_OK;
}

static spine_status load_model(const char *dir, const server_opts *o, served_model **out,
                               spine_error *err) {
    served_model *sm = calloc(1, sizeof *sm);
    if (!sm) return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    spine_status st;
    if (dir[0] && is_moe_folder(dir)) {
        st = load_moe(dir, o, &sm->moe, err);
    } else if (dir[0]) {
        st = spine_model_load(dir, &sm->m, err);
    } else {
        dlrm_gen_opts g = {.preset = DLRM_DEFAULT_PRESET,
                           .rows_scale = DLRM_DEFAULT_ROWS_SCALE,
                           .seed = DLRM_DEFAULT_SEED};
        spine_pool *pool = NULL;
        st = spine_pool_create(2, &pool, err);
        g.pool = pool;
        if (!st) st = dlrm_gen_model(&g, &sm->m, err);
        spine_pool_free(pool);
    }
    if (st) {
        free(sm);
        return st;
    }
    atomic_init(&sm->refs, 1); /* the slot's reference */
    sm->generation = 1;
    *out = sm;
    return SPINE_OK;
}

/* The current model of a slot, with a reference for the caller (NULL if unknown). */
static served_model *acquire(server *s, const char *name, size_t len) {
    served_model *sm = NULL;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->nslots; i++) {
        if (strlen(s->slots[i].name) == len && memcmp(s->slots[i].name, name, len) == 0) {
            sm = s->slots[i].cur;
            atomic_fetch_add(&sm->refs, 1);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return sm;
}

/* Load a slot's model again and swap it in; in-flight work finishes on the old one. */
static spine_status reload_slot(server *s, int i, spine_error *err) {
    served_model *sm;
    spine_status st = load_model(s->slots[i].dir, &s->o, &sm, err);
    if (st) return st;
    snprintf(sm->name, sizeof sm->name, "%s", s->slots[i].name);
    pthread_mutex_lock(&s->mu);
    served_model *old = s->slots[i].cur;
    sm->generation = old->generation + 1;
    s->slots[i].cur = sm;
    pthread_mutex_unlock(&s->mu);
    served_model_release(old);
    fprintf(stderr, "spine serve: reloaded model '%s' (generation %llu)\n", sm->name,
            (unsigned long long)sm->generation);
    return SPINE_OK;
}

/* ---- responses ---- */

static enum MHD_Result respond(struct MHD_Connection *c, unsigned status, const char *type,
                               spine_buf *b, size_t json_len, bool close) {
    size_t len = b->len;
    char *data = b->data ? b->data : strdup("");
    memset(b, 0, sizeof *b);
    struct MHD_Response *r = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(data);
        return MHD_NO;
    }
    if (type) MHD_add_response_header(r, "Content-Type", type);
    if (json_len) {
        char n[32];
        snprintf(n, sizeof n, "%zu", json_len);
        MHD_add_response_header(r, "Inference-Header-Content-Length", n);
    }
    if (close) MHD_add_response_header(r, "Connection", "close");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result respond_json(struct MHD_Connection *c, unsigned status, spine_buf *b) {
    return respond(c, status, "application/json", b, 0, false);
}

static enum MHD_Result fail(server *s, struct MHD_Connection *c, unsigned status,
                            fail_reason reason, const char *msg) {
    atomic_fetch_add(&s->mx.failures[reason], 1);
    spine_buf b = {0};
    proto_error_json(&b, msg);
    return respond(c, status, "application/json", &b, 0, status == 413);
}

/* ---- metadata ---- */

static void moe_metadata(spine_buf *b, const served_model *sm) {
    const moe_config *c = &sm->moe->model->c;
    spine_buf_printf(
        b,
        "{\"name\":\"%s\",\"versions\":[\"1\"],\"platform\":\"spine_moe\","
        "\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\",\"shape\":[-1,-1]}],"
        "\"outputs\":[{\"name\":\"logits\",\"datatype\":\"FP32\",\"shape\":[-1,%d]},"
        "{\"name\":\"generated_ids\",\"datatype\":\"INT64\",\"shape\":[-1,-1]}],"
        "\"parameters\":{\"vocab_size\":%d,\"max_sequences\":%d,\"max_positions\":%d,"
        "\"max_tokens\":%d,\"layers\":%d,\"experts\":%d,\"top_k\":%d}}",
        sm->name, c->vocab, c->vocab, MOE_SERVE_MAX_BATCH, sm->moe->max_seq, PROTO_MOE_MAX_NEW,
        c->layers, c->experts, c->top_k);
}

static void model_metadata(spine_buf *b, const served_model *sm) {
    if (sm->moe) {
        moe_metadata(b, sm);
        return;
    }
    const spine_model_desc *d = spine_model_describe(sm->m);
    spine_buf_printf(
        b,
        "{\"name\":\"%s\",\"versions\":[\"1\"],\"platform\":\"spine_dlrm\","
        "\"inputs\":[{\"name\":\"dense\",\"datatype\":\"FP32\",\"shape\":[-1,%d]},"
        "{\"name\":\"lengths\",\"datatype\":\"INT32\",\"shape\":[%d,-1]},"
        "{\"name\":\"values\",\"datatype\":\"INT64\",\"shape\":[-1]},"
        "{\"name\":\"weights\",\"datatype\":\"FP32\",\"shape\":[-1],\"optional\":true}],"
        "\"outputs\":[{\"name\":\"probabilities\",\"datatype\":\"FP32\",\"shape\":[-1,1]}],"
        "\"parameters\":{\"lookups_per_table\":%d,\"table_rows\":[",
        sm->name, d->num_dense, d->num_tables, d->lookups_per_table);
    for (int t = 0; t < d->num_tables; t++)
        spine_buf_printf(b, "%s%lld", t ? "," : "", (long long)d->tables[t].rows);
    spine_buf_puts(b, "]}}");
}

static void model_config(spine_buf *b, const server *s, const served_model *sm) {
    if (sm->moe) {
        spine_buf_printf(b,
                         "{\"name\":\"%s\",\"platform\":\"spine_moe\",\"backend\":\"spine\","
                         "\"max_batch_size\":%d,\"input\":[{\"name\":\"input_ids\",\"data_type\":"
                         "\"TYPE_INT64\",\"dims\":[-1]}],\"output\":[{\"name\":\"logits\","
                         "\"data_type\":\"TYPE_FP32\",\"dims\":[%d]}],\"instance_group\":[{"
                         "\"count\":1,\"kind\":\"KIND_CPU\"}]}",
                         sm->name, MOE_SERVE_MAX_BATCH, sm->moe->model->c.vocab);
        return;
    }
    const spine_model_desc *d = spine_model_describe(sm->m);
    /* Triton's model configuration; max_batch_size 0 because "lengths" is table-major, not
     * batch-first: batching happens in the server, across requests */
    spine_buf_printf(
        b,
        "{\"name\":\"%s\",\"platform\":\"spine_dlrm\",\"backend\":\"spine\",\"max_batch_size\":0,"
        "\"input\":[{\"name\":\"dense\",\"data_type\":\"TYPE_FP32\",\"dims\":[-1,%d]},"
        "{\"name\":\"lengths\",\"data_type\":\"TYPE_INT32\",\"dims\":[%d,-1]},"
        "{\"name\":\"values\",\"data_type\":\"TYPE_INT64\",\"dims\":[-1]},"
        "{\"name\":\"weights\",\"data_type\":\"TYPE_FP32\",\"dims\":[-1],\"optional\":true}],"
        "\"output\":[{\"name\":\"probabilities\",\"data_type\":\"TYPE_FP32\",\"dims\":[-1,1]}],"
        "\"dynamic_batching\":{\"preferred_batch_size\":[%d],\"max_queue_delay_microseconds\":%.0f}"
        ","
        "\"instance_group\":[{\"count\":%d,\"kind\":\"KIND_CPU\"}],"
        "\"parameters\":{\"sla_ms\":{\"string_value\":\"%g\"},\"threads_per_instance\":{\"string_"
        "value\":\"%d\"}}}",
        sm->name, d->num_dense, d->num_tables, s->o.max_batch, s->o.max_delay_us, s->o.workers,
        s->o.sla_ms, s->o.threads);
}

static void write_hist(spine_buf *b, const char *name, const char *help, const histogram *h) {
    spine_buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < h->n; i++) {
        cum += atomic_load(&h->count[i]);
        spine_buf_printf(b, "%s_bucket{le=\"%.6g\"} %llu\n", name, h->le[i],
                         (unsigned long long)cum);
    }
    cum += atomic_load(&h->count[h->n]);
    spine_buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9g\n%s_count %llu\n", name,
                     (unsigned long long)cum, name, atomic_load(&h->sum), name,
                     (unsigned long long)cum);
}

static void write_metrics(server *s, spine_buf *b) {
    metrics *m = &s->mx;
    spine_buf_printf(
        b,
        "# HELP spine_requests_total Infer requests received.\n# TYPE spine_requests_total "
        "counter\n"
        "spine_requests_total %llu\n"
        "# HELP spine_inferences_total Samples inferred.\n# TYPE spine_inferences_total counter\n"
        "spine_inferences_total %llu\n"
        "# HELP spine_batches_total Batches run.\n# TYPE spine_batches_total counter\n"
        "spine_batches_total %llu\n"
        "# HELP spine_request_failures_total Failed requests by reason.\n"
        "# TYPE spine_request_failures_total counter\n",
        (unsigned long long)atomic_load(&m->requests),
        (unsigned long long)atomic_load(&m->inferences),
        (unsigned long long)atomic_load(&m->batches));
    for (int r = 0; r < FAIL_COUNT; r++)
        spine_buf_printf(b, "spine_request_failures_total{reason=\"%s\"} %llu\n",
                         fail_reason_name((fail_reason)r),
                         (unsigned long long)atomic_load(&m->failures[r]));
    spine_buf_printf(
        b,
        "# HELP spine_queue_requests Requests waiting.\n# TYPE spine_queue_requests gauge\n"
        "spine_queue_requests %d\n"
        "# HELP spine_queue_samples Samples waiting.\n# TYPE spine_queue_samples gauge\n"
        "spine_queue_samples %d\n"
        "# HELP spine_inflight_requests Requests accepted and not yet answered.\n"
        "# TYPE spine_inflight_requests gauge\nspine_inflight_requests %d\n"
        "# HELP spine_service_rate_samples_per_second Measured service rate.\n"
        "# TYPE spine_service_rate_samples_per_second gauge\n"
        "spine_service_rate_samples_per_second %.1f\n"
        "# HELP spine_sla_seconds The server's latency target.\n# TYPE spine_sla_seconds gauge\n"
        "spine_sla_seconds %.6g\n"
        "# HELP spine_uptime_seconds Seconds since start.\n# TYPE spine_uptime_seconds gauge\n"
        "spine_uptime_seconds %.3f\n",
        atomic_load(&m->queue_requests), atomic_load(&m->queue_samples), atomic_load(&m->inflight),
        batcher_rate(s->b), s->o.sla_ms / 1e3, spine_now() - s->started);
    write_hist(b, "spine_batch_size", "Samples per batch run.", &m->batch_size);
    write_hist(b, "spine_queue_duration_seconds", "Time from arrival to compute start.",
               &m->queue_s);
    write_hist(b, "spine_compute_duration_seconds", "Time of one batch run.", &m->compute_s);
    write_hist(b, "spine_request_duration_seconds", "Time from arrival to answer.", &m->total_s);
    spine_buf_puts(b, "# HELP spine_store_lookups_total Bags pooled, per model.\n"
                      "# TYPE spine_store_lookups_total counter\n"
                      "# HELP spine_store_rows_read_total Rows gathered, per model.\n"
                      "# TYPE spine_store_rows_read_total counter\n"
                      "# HELP spine_store_hits_total Rows served from a faster tier, per model.\n"
                      "# TYPE spine_store_hits_total counter\n"
                      "# HELP spine_model_generation Loads of the model (reloads + 1).\n"
                      "# TYPE spine_model_generation gauge\n");
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->nslots; i++) {
        served_model *sm = s->slots[i].cur;
        if (sm->moe) {
            moe_served *ms = sm->moe;
            pthread_mutex_lock(&ms->stats_mu);
            moe_tier_stats ts = ms->snap;
            spine_buf_printf(
                b,
                "spine_moe_requests_total{model=\"%s\"} %llu\n"
                "spine_moe_prompt_tokens_total{model=\"%s\"} %llu\n"
                "spine_moe_generated_tokens_total{model=\"%s\"} %llu\n"
                "spine_moe_expert_hits_total{model=\"%s\"} %llu\n"
                "spine_moe_expert_misses_total{model=\"%s\"} %llu\n"
                "spine_moe_expert_bytes_moved_total{model=\"%s\"} %llu\n"
                "spine_model_generation{model=\"%s\"} %llu\n",
                sm->name, (unsigned long long)atomic_load(&sm->moe->requests), sm->name,
                (unsigned long long)atomic_load(&sm->moe->tokens_in), sm->name,
                (unsigned long long)atomic_load(&sm->moe->tokens_out), sm->name,
                (unsigned long long)ts.hits, sm->name, (unsigned long long)ts.misses, sm->name,
                (unsigned long long)ts.bytes_moved, sm->name, (unsigned long long)sm->generation);
            spine_buf_printf(b,
                             "spine_moe_expert_slots{model=\"%s\"} %d\n"
                             "spine_moe_expert_fast_bytes{model=\"%s\"} %llu\n",
                             sm->name, ts.slots, sm->name, (unsigned long long)ts.fast_bytes);
            if (ts.pred_total)
                spine_buf_printf(b, "spine_moe_prefetch_precision{model=\"%s\"} %.4f\n", sm->name,
                                 (double)ts.pred_hits / (double)ts.pred_total);
            for (int g = 0; g < ms->ngroups; g++)
                spine_buf_printf(b, "spine_moe_group_rows_total{model=\"%s\",group=\"%d\"} %llu\n",
                                 sm->name, g, (unsigned long long)ms->group_snap[g]);
            pthread_mutex_unlock(&ms->stats_mu);
            continue;
        }
        const spine_model_desc *d = spine_model_describe(sm->m);
        spine_store_stats tot = {0};
        for (int t = 0; t < d->num_tables; t++) {
            spine_store_stats st;
            spine_store_stats_get(spine_model_store(sm->m, t), &st);
            tot.lookups += st.lookups;
            tot.rows_read += st.rows_read;
            tot.hits += st.hits;
        }
        spine_buf_printf(b,
                         "spine_store_lookups_total{model=\"%s\"} %llu\n"
                         "spine_store_rows_read_total{model=\"%s\"} %llu\n"
                         "spine_store_hits_total{model=\"%s\"} %llu\n"
                         "spine_model_generation{model=\"%s\"} %llu\n",
                         sm->name, (unsigned long long)tot.lookups, sm->name,
                         (unsigned long long)tot.rows_read, sm->name, (unsigned long long)tot.hits,
                         sm->name, (unsigned long long)sm->generation);
    }
    pthread_mutex_unlock(&s->mu);
}

/* Live numbers for the dashboard: totals, and percentiles of the last 10 s of requests. */
static void write_stats(server *s, spine_buf *b) {
    metrics *m = &s->mx;
    static _Thread_local double lat[WINDOW];
    size_t n = 0;
    double now = spine_now();
    /* samples/s over the last RATE_S seconds, or over the span the ring still holds when it
     * turned over faster than that: a rate the server measures, so the page needs no two polls */
    const double RATE_S = 3.0;
    double rate_samples = 0, oldest = now;
    uint64_t in_rate = 0;
    pthread_mutex_lock(&m->window_mu);
    uint64_t have = SPINE_MIN(m->window_n, (uint64_t)WINDOW);
    for (uint64_t i = 0; i < have; i++) {
        double age = now - m->window_t[i];
        if (age <= 10.0) lat[n++] = m->window[i];
        if (age <= RATE_S) {
            rate_samples += m->window_samples[i];
            in_rate++;
            if (m->window_t[i] < oldest) oldest = m->window_t[i];
        }
    }
    pthread_mutex_unlock(&m->window_mu);
    double span = have == WINDOW && in_rate == have ? now - oldest : RATE_S;
    span = SPINE_MIN(span, SPINE_MIN(RATE_S, now - s->started));
    double samples_per_s = span > 1e-3 ? rate_samples / span : 0.0;
    spine_sort_doubles(lat, n);
#define P(q) (spine_percentile(lat, n, (q)*100) * 1e3)
    uint64_t bs = 0, bc = 0;
    for (int i = 0; i <= m->batch_size.n; i++) bc += atomic_load(&m->batch_size.count[i]);
    bs = (uint64_t)atomic_load(&m->batch_size.sum);
    spine_buf_printf(b,
                     "{\"time\":%.3f,\"requests\":%llu,\"inferences\":%llu,\"batches\":%llu,"
                     "\"failures\":%llu,\"queue_requests\":%d,\"inflight\":%d,"
                     "\"window_s\":10,\"window_requests\":%zu,\"p50_ms\":%.3f,\"p95_ms\":%.3f,"
                     "\"p99_ms\":%.3f,\"mean_batch\":%.2f,\"sla_ms\":%g,"
                     "\"samples_per_s\":%.3f,\"rate_s\":%g}",
                     now - s->started, (unsigned long long)atomic_load(&m->requests),
                     (unsigned long long)atomic_load(&m->inferences),
                     (unsigned long long)atomic_load(&m->batches),
                     (unsigned long long)(atomic_load(&m->failures[FAIL_BAD_REQUEST]) +
                                          atomic_load(&m->failures[FAIL_OVERLOAD]) +
                                          atomic_load(&m->failures[FAIL_DEADLINE]) +
                                          atomic_load(&m->failures[FAIL_INTERNAL]) +
                                          atomic_load(&m->failures[FAIL_NOT_FOUND]) +
                                          atomic_load(&m->failures[FAIL_TOO_LARGE])),
                     atomic_load(&m->queue_requests), atomic_load(&m->inflight), n, P(0.5), P(0.95),
                     P(0.99), bc ? (double)bs / (double)bc : 0.0, s->o.sla_ms, samples_per_s,
                     RATE_S);
#undef P
}

/* ---- infer ---- */

static void request_done(request *rq) {
    conn *cs = rq->done_arg;
    MHD_resume_connection(cs->c);
}

static void free_request(request *rq) {
    if (!rq) return;
    served_model_release(rq->sm);
    infer_request_free(&rq->in);
    free(rq->out);
    free(rq);
}

static enum MHD_Result moe_infer(server *s, struct MHD_Connection *c, conn *cs, served_model *sm,
                                 double t0);
static enum MHD_Result finish_infer(server *s, struct MHD_Connection *c, conn *cs);

/* The decoder asks, once it knows the batch size, whether the request can still be served:
 * refused then, an overloaded server skips widening and checking its indices (with nothing
 * queued nothing servable is refused: small requests still run inline). */
typedef struct admit_arg {
    server *s;
    request *rq;
    const char *why;
    fail_reason reason;
} admit_arg;

static bool admit(void *arg, int32_t batch) {
    admit_arg *a = arg;
    a->why = batcher_refusal(a->s->b, a->rq->deadline, batch, &a->reason);
    return a->why == NULL;
}

static enum MHD_Result start_infer(server *s, struct MHD_Connection *c, conn *cs, const char *name,
                                   size_t name_len) {
    atomic_fetch_add(&s->mx.requests, 1);
    served_model *sm = acquire(s, name, name_len);
    if (!sm) return fail(s, c, 404, FAIL_NOT_FOUND, "unknown model");
    if (sm->moe) return moe_infer(s, c, cs, sm, spine_now());
    request *rq = calloc(1, sizeof *rq);
    if (!rq) {
        served_model_release(sm);
        return fail(s, c, 500, FAIL_INTERNAL, "out of memory");
    }
    rq->sm = sm;
    rq->t_arrival = spine_now();
    double budget_ms = s->o.sla_ms;
    const char *hdr = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Spine-Deadline-Ms");
    if (hdr) {
        char *end;
        double v = strtod(hdr, &end);
        if (end == hdr || *end || !(v > 0 && v < 3.6e6)) {
            free_request(rq);
            return fail(s, c, 400, FAIL_BAD_REQUEST,
                        "X-Spine-Deadline-Ms must be a positive number");
        }
        budget_ms = v;
    }
    rq->deadline = rq->t_arrival + budget_ms / 1e3;
    size_t json_len = 0;
    hdr = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Inference-Header-Content-Length");
    if (hdr) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(hdr, &end, 10);
        if (errno || end == hdr || *end || v == 0 || v > cs->body.len) {
            free_request(rq);
            return fail(s, c, 400, FAIL_BAD_REQUEST, "bad Inference-Header-Content-Length");
        }
        json_len = (size_t)v;
    }
    spine_error err = {0};
    admit_arg aa = {s, rq, NULL, FAIL_OVERLOAD};
    spine_status st = proto_decode_infer(sm->m, cs->body.data ? cs->body.data : "", cs->body.len,
                                         json_len, admit, &aa, &rq->in, &err);
    spine_buf_free(&cs->body);
    if (!st && rq->in.refused) {
        free_request(rq);
        return fail(s, c, 503, aa.reason, aa.why);
    }
    if (st) {
        free_request(rq);
        if (st == SPINE_ERR_NOMEM) return fail(s, c, 500, FAIL_INTERNAL, err.msg);
        if (st == SPINE_ERR_LIMIT) return fail(s, c, 413, FAIL_TOO_LARGE, err.msg);
        return fail(s, c, 400, FAIL_BAD_REQUEST, err.msg);
    }
    rq->out = malloc((size_t)rq->in.batch * sizeof *rq->out);
    if (!rq->out) {
        free_request(rq);
        return fail(s, c, 500, FAIL_INTERNAL, "out of memory");
    }
    rq->done = request_done;
    rq->done_arg = cs;
    cs->rq = rq;
    if (batcher_run_inline(s->b, rq)) return finish_infer(s, c, cs); /* small, workers idle */
    /* suspend before submitting: a worker may finish (and resume) before submit returns */
    MHD_suspend_connection(c);
    if (!batcher_submit(s->b, rq)) {
        MHD_resume_connection(c); /* answered on the next call, from rq->failed */
    }
    return MHD_YES;
}

/* An MoE request runs on the HTTP thread that received it, one at a time per model. */
static enum MHD_Result moe_infer(server *s, struct MHD_Connection *c, conn *cs, served_model *sm,
                                 double t0) {
    moe_served *ms = sm->moe;
    const moe_config *cf = &ms->model->c;
    if (MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Inference-Header-Content-Length")) {
        served_model_release(sm);
        spine_buf_free(&cs->body);
        return fail(s, c, 400, FAIL_BAD_REQUEST,
                    "binary tensors are not supported for MoE models: send JSON");
    }
    spine_error err = {0};
    moe_infer_request r;
    spine_status st = proto_decode_moe(cs->body.data ? cs->body.data : "", cs->body.len, cf->vocab,
                                       MOE_SERVE_MAX_BATCH, ms->max_seq, &r, &err);
    spine_buf_free(&cs->body);
    if (st) {
        served_model_release(sm);
        if (st == SPINE_ERR_NOMEM) return fail(s, c, 500, FAIL_INTERNAL, err.msg);
        if (st == SPINE_ERR_LIMIT) return fail(s, c, 413, FAIL_TOO_LARGE, err.msg);
        return fail(s, c, 400, FAIL_BAD_REQUEST, err.msg);
    }
    size_t V = (size_t)cf->vocab;
    float *logits = malloc((size_t)r.batch * V * sizeof *logits);
    int64_t *gen = malloc(((size_t)r.batch * r.max_tokens + 1) * sizeof *gen);
    int64_t *step = malloc((size_t)r.batch * sizeof *step);
    if (!logits || !gen || !step) {
        st = spine_fail(&err, SPINE_ERR_NOMEM, "out of memory");
    } else {
        pthread_mutex_lock(&ms->mu);
        double tc = spine_now();
        moe_ctx_reset(ms->ctx);
        st = moe_forward(ms->ctx, r.ids, r.batch, r.len, logits, &err);
        for (int g = 0; g < r.max_tokens && !st; g++) {
            for (int b = 0; b < r.batch; b++) {
                const float *l = logits + (size_t)b * V;
                size_t best = 0;
                for (size_t i = 1; i < V; i++)
                    if (l[i] > l[best]) best = i;
                step[b] = (int64_t)best;
                gen[(size_t)b * r.max_tokens + g] = (int64_t)best;
            }
            st = moe_forward(ms->ctx, step, r.batch, 1, logits, &err);
        }
        hist_observe(&s->mx.compute_s, spine_now() - tc);
        pthread_mutex_lock(&ms->stats_mu);
        moe_ctx_tier_stats(ms->ctx, &ms->snap);
        int ng = 0;
        const uint64_t *gr = moe_ctx_group_rows(ms->ctx, &ng);
        if (gr) memcpy(ms->group_snap, gr, (size_t)ng * sizeof *gr);
        pthread_mutex_unlock(&ms->stats_mu);
        pthread_mutex_unlock(&ms->mu);
    }
    enum MHD_Result ret;
    if (st) {
        ret = fail(s, c, st == SPINE_ERR_NOMEM ? 500 : 400,
                   st == SPINE_ERR_NOMEM ? FAIL_INTERNAL : FAIL_BAD_REQUEST, err.msg);
    } else {
        atomic_fetch_add(&ms->requests, 1);
        atomic_fetch_add(&ms->tokens_in, (uint64_t)r.batch * r.len);
        atomic_fetch_add(&ms->tokens_out, (uint64_t)r.batch * r.max_tokens);
        atomic_fetch_add(&s->mx.inferences, (uint64_t)r.batch);
        spine_buf b = {0};
        if (proto_encode_moe(sm->name, &r, cf->vocab, logits, gen, &b)) {
            spine_buf_free(&b);
            ret = fail(s, c, 500, FAIL_INTERNAL, "out of memory");
        } else {
            ret = respond_json(c, 200, &b);
        }
        metrics_request_done(&s->mx, spine_now() - t0, (uint32_t)r.batch);
    }
    free(logits);
    free(gen);
    free(step);
    moe_infer_request_free(&r);
    served_model_release(sm);
    return ret;
}

static enum MHD_Result finish_infer(server *s, struct MHD_Connection *c, conn *cs) {
    request *rq = cs->rq;
    int status = atomic_load(&rq->failed);
    enum MHD_Result ret;
    if (status) {
        ret = fail(s, c, (unsigned)status, rq->reason, rq->fail_msg);
    } else {
        spine_buf b = {0};
        size_t json_len = 0;
        if (proto_encode_infer(rq->sm->name, &rq->in, rq->out, &b, &json_len)) {
            spine_buf_free(&b);
            ret = fail(s, c, 500, FAIL_INTERNAL, "out of memory");
        } else {
            ret = respond(c, 200, json_len ? "application/octet-stream" : "application/json", &b,
                          json_len, false);
        }
    }
    double total = spine_now() - rq->t_arrival;
    metrics_request_done(&s->mx, total, status ? 0u : (uint32_t)rq->in.batch);
    /* the window covers the idle time after the answer; small requests do not open one: their
     * batches gain nothing from warm CPUs and each wake-up would pay for preempting a filler */
    if (!status && rq->in.batch >= IDLEPOLL_MIN_SAMPLES) spine_idlepoll_touch(s->ip);
    free_request(rq);
    cs->rq = NULL;
    return ret;
}

/* ---- routing ---- */

static bool seg_eq(const char *p, size_t n, const char *lit) {
    return strlen(lit) == n && memcmp(p, lit, n) == 0;
}

static enum MHD_Result route(server *s, struct MHD_Connection *c, conn *cs, const char *url,
                             const char *method) {
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0,
         post = strcmp(method, "POST") == 0;
    spine_buf b = {0};
    if (strcmp(url, "/") == 0 && get) {
        spine_buf_puts(&b, dashboard_html);
        return respond(c, 200, "text/html; charset=utf-8", &b, 0, false);
    }
    if (strcmp(url, "/favicon.ico") == 0 && get) return respond(c, 204, NULL, &b, 0, false);
    if (strcmp(url, "/metrics") == 0 && get) {
        write_metrics(s, &b);
        return respond(c, 200, "text/plain; version=0.0.4", &b, 0, false);
    }
    if (strcmp(url, "/v2/spine/stats") == 0 && get) {
        write_stats(s, &b);
        return respond_json(c, 200, &b);
    }
    if (strcmp(url, "/v2") == 0 && get) {
        spine_buf_printf(&b,
                         "{\"name\":\"spine\",\"version\":\"%s\",\"extensions\":"
                         "[\"binary_tensor_data\",\"model_repository\"]}",
                         spine_version());
        return respond_json(c, 200, &b);
    }
    if (strcmp(url, "/v2/health/live") == 0 && get) return respond_json(c, 200, &b);
    if (strcmp(url, "/v2/health/ready") == 0 && get)
        return respond_json(c, atomic_load(&s->draining) ? 503 : 200, &b);
    if (strcmp(url, "/v2/repository/index") == 0 && post) {
        spine_buf_puts(&b, "[");
        pthread_mutex_lock(&s->mu);
        for (int i = 0; i < s->nslots; i++)
            spine_buf_printf(&b, "%s{\"name\":\"%s\",\"version\":\"1\",\"state\":\"READY\"}",
                             i ? "," : "", s->slots[i].name);
        pthread_mutex_unlock(&s->mu);
        spine_buf_puts(&b, "]");
        return respond_json(c, 200, &b);
    }
    const char *rp = "/v2/repository/models/";
    if (strncmp(url, rp, strlen(rp)) == 0 && post) {
        const char *name = url + strlen(rp), *slash = strchr(name, '/');
        if (!slash || strcmp(slash, "/load") != 0)
            return fail(s, c, 404, FAIL_NOT_FOUND, "unknown repository action (load)");
        int idx = -1;
        for (int i = 0; i < s->nslots; i++)
            if (seg_eq(name, (size_t)(slash - name), s->slots[i].name)) idx = i;
        if (idx < 0) return fail(s, c, 404, FAIL_NOT_FOUND, "unknown model");
        spine_error err = {0};
        if (reload_slot(s, idx, &err)) return fail(s, c, 500, FAIL_INTERNAL, err.msg);
        return respond_json(c, 200, &b);
    }
    const char *mp = "/v2/models/";
    if (strncmp(url, mp, strlen(mp)) == 0) {
        const char *name = url + strlen(mp), *rest = strchr(name, '/');
        size_t nlen = rest ? (size_t)(rest - name) : strlen(name);
        if (!rest) rest = "";
        if (strncmp(rest, "/versions/1", 11) == 0) rest += 11; /* the one version */
        if (strcmp(rest, "/infer") == 0) {
            if (!post) return fail(s, c, 405, FAIL_BAD_REQUEST, "infer takes POST");
            if (atomic_load(&s->draining))
                return fail(s, c, 503, FAIL_OVERLOAD, "the server is shutting down");
            return start_infer(s, c, cs, name, nlen);
        }
        served_model *sm = acquire(s, name, nlen);
        if (!sm) return fail(s, c, 404, FAIL_NOT_FOUND, "unknown model");
        enum MHD_Result ret;
        if (!get)
            ret = fail(s, c, 405, FAIL_BAD_REQUEST, "use GET");
        else if (strcmp(rest, "") == 0) {
            model_metadata(&b, sm);
            ret = respond_json(c, 200, &b);
        } else if (strcmp(rest, "/ready") == 0) {
            ret = respond_json(c, 200, &b);
        } else if (strcmp(rest, "/config") == 0) {
            model_config(&b, s, sm);
            ret = respond_json(c, 200, &b);
        } else {
            ret = fail(s, c, 404, FAIL_NOT_FOUND, "no such endpoint");
        }
        served_model_release(sm);
        return ret;
    }
    return fail(s, c, 404, FAIL_NOT_FOUND, "no such endpoint");
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls) {
    (void)version;
    server *s = cls;
    conn *cs = *con_cls;
    if (!cs) {
        cs = calloc(1, sizeof *cs);
        if (!cs) return MHD_NO;
        cs->c = c;
        atomic_fetch_add(&s->mx.inflight, 1);
        *con_cls = cs;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        unsigned long long want = cl ? strtoull(cl, NULL, 10) : 0;
        if (want > s->o.max_body) {
            cs->too_large = true;
            return fail(s, c, 413, FAIL_TOO_LARGE, "request body too large");
        }
        if (want) { /* one allocation for the whole body instead of a doubling series */
            spine_buf_append(&cs->body, "", 0);
            char *p = realloc(cs->body.data, (size_t)want + 1);
            if (p) {
                cs->body.data = p;
                cs->body.cap = (size_t)want + 1;
            }
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!cs->too_large) {
            if (cs->body.len + *upload_size > s->o.max_body) {
                cs->too_large = true;
                spine_buf_free(&cs->body);
            } else {
                spine_buf_append(&cs->body, upload, *upload_size);
                if (cs->body.failed) {
                    cs->too_large = true;
                    spine_buf_free(&cs->body);
                }
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (cs->rq) return finish_infer(s, c, cs);
    if (cs->too_large) return fail(s, c, 413, FAIL_TOO_LARGE, "request body too large");
    return route(s, c, cs, url, method);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe) {
    (void)c;
    (void)toe;
    server *s = cls;
    conn *cs = *con_cls;
    if (!cs) return;
    free_request(cs->rq); /* only if the answer was never sent */
    spine_buf_free(&cs->body);
    atomic_fetch_sub(&s->mx.inflight, 1);
    free(cs);
    *con_cls = NULL;
}

/* ---- lifecycle ---- */

int server_run(const server_opts *o) {
    server *s = calloc(1, sizeof *s);
    if (!s) return 1;
    s->o = *o;
    s->started = spine_now();
    /* request bodies and decoded tensors are megabytes each: keep freed memory in the heap
     * instead of mmap/munmap per request, which page-faulted every page of every request */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    pthread_mutex_init(&s->mu, NULL);
    metrics_init(&s->mx, o->sla_ms / 1e3, o->max_batch);
    spine_error err = {0};
    int rc = 1;
    /* signals: handled by sigwait in this thread; blocked in every thread started from here */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* models */
    int nm = o->nmodels ? o->nmodels : 1;
    for (int i = 0; i < nm; i++) {
        slot *sl = &s->slots[s->nslots];
        const char *dir = o->nmodels ? o->models[i] : "";
        snprintf(sl->dir, sizeof sl->dir, "%s", dir);
        if (dir[0]) { /* served under its folder's name */
            const char *base = dir + strlen(dir);
            while (base > dir && base[-1] == '/') base--;
            const char *end = base;
            while (base > dir && base[-1] != '/') base--;
            snprintf(sl->name, sizeof sl->name, "%.*s", (int)(end - base), base);
        } else {
            snprintf(sl->name, sizeof sl->name, "default");
        }
        for (int k = 0; k < s->nslots; k++)
            if (strcmp(s->slots[k].name, sl->name) == 0) {
                fprintf(stderr, "spine serve: two models named '%s'\n", sl->name);
                goto out;
            }
        fprintf(stderr, "spine serve: loading %s%s\n", dir[0] ? dir : "the built-in default model",
                dir[0] ? "" : " (rmc2 shape, 25,000 rows per table)");
        if (load_model(sl->dir, o, &sl->cur, &err)) {
            fprintf(stderr, "spine serve: %s\n", err.msg);
            goto out;
        }
        snprintf(sl->cur->name, sizeof sl->cur->name, "%s", sl->name);
        s->nslots++;
    }
    batcher_opts bo = {o->workers,   o->threads, o->max_batch, o->max_queue, o->max_delay_us / 1e6,
                       o->inline_max};
    if (batcher_start(&bo, &s->mx, &s->b, &err)) {
        fprintf(stderr, "spine serve: %s\n", err.msg);
        goto out;
    }
    char cpus[256] = "";
    if (o->idle_poll_ms > 0) {
        spine_error e2 = {0};
        if (spine_idlepoll_start(o->idle_poll_ms, 1024, &s->ip, &e2))
            fprintf(stderr, "spine serve: %s; the CPUs may halt between requests\n", e2.msg);
        else
            spine_idlepoll_cpus(s->ip, cpus, sizeof cpus);
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    if (inet_pton(AF_INET, o->host, &addr.sin_addr) != 1) {
        fprintf(stderr, "spine serve: --host must be an IPv4 address, not '%s'\n", o->host);
        goto out;
    }
    s->d = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG,
        (uint16_t)o->port, NULL, NULL, handler, s, MHD_OPTION_SOCK_ADDR, &addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)o->http_threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)o->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->idle_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)o->max_header, MHD_OPTION_NOTIFY_COMPLETED,
        completed, s, MHD_OPTION_END); /* SO_REUSEADDR only (MHD's default): not
                                        * SO_REUSEPORT, or a second server would share the port */
    if (!s->d) {
        fprintf(stderr, "spine serve: cannot listen on %s:%d: %s\n", o->host, o->port,
                strerror(errno));
        goto out;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    int port = di ? di->port : o->port;
    printf("spine serve: listening on http://%s:%d (models:", o->host, port);
    for (int i = 0; i < s->nslots; i++) printf(" %s", s->slots[i].name);
    printf("; %d worker%s x %d thread%s, max batch %d, max delay %.0f us, SLA %g ms)\n", o->workers,
           o->workers == 1 ? "" : "s", o->threads, o->threads == 1 ? "" : "s", o->max_batch,
           o->max_delay_us, o->sla_ms);
    if (s->ip)
        printf("spine serve: keeping CPUs %s awake for %g ms after each request of >= %d samples\n",
               cpus, o->idle_poll_ms, IDLEPOLL_MIN_SAMPLES);
    fflush(stdout);
    for (;;) {
        int sig = 0;
        if (sigwait(&sigs, &sig) != 0) continue;
        if (sig == SIGHUP) {
            for (int i = 0; i < s->nslots; i++)
                if (reload_slot(s, i, &err)) fprintf(stderr, "spine serve: reload: %s\n", err.msg);
            continue;
        }
        break; /* SIGTERM or SIGINT: drain */
    }
    fprintf(stderr, "spine serve: draining\n");
    atomic_store(&s->draining, true);
    MHD_socket lfd = MHD_quiesce_daemon(s->d); /* stop accepting */
    if (lfd != MHD_INVALID_SOCKET) close(lfd);
    double t0 = spine_now();
    while (atomic_load(&s->mx.inflight) > 0 && spine_now() - t0 < o->drain_timeout_s) usleep(2000);
    int left = atomic_load(&s->mx.inflight);
    MHD_stop_daemon(s->d);
    s->d = NULL;
    fprintf(stderr, "spine serve: stopped (%d requests unanswered)\n", left);
    rc = left ? 1 : 0;
out:
    if (s->d) MHD_stop_daemon(s->d);
    spine_idlepoll_stop(s->ip);
    batcher_stop(s->b);
    for (int i = 0; i < s->nslots; i++) served_model_release(s->slots[i].cur);
    free(s);
    return rc;
}
