/* cmd_load.c: `spine load`, an open-loop (or, with --concurrency, closed-loop) load generator
 * for spine's (or any Open Inference Protocol DLRM) server.
 *
 * Arrivals are Poisson at the offered rate and are never held back by slow answers: a
 * dispatcher releases each request at its scheduled time to a pool of sender threads (one
 * keep-alive connection each), and latency is measured from the scheduled time, so time spent
 * waiting for a free sender counts (no coordinated omission). Query sizes come from a
 * distribution (DeepRecSys: normal(165, 16) samples, capped at 1024). Bodies use the binary
 * tensor extension with INT32 indices (half the bytes of INT64), each query a random window of
 * pools of random valid inputs (8 x the largest query, at least 8192 samples, at most ~256 MB
 * of indices unless one query needs more), so consecutive queries read different rows.
 * --concurrency N is perf_analyzer's mode instead: N senders, each
 * sending its next query when the last is answered, latency from send to answer. --find-max
 * searches the highest rate at which at least p% of the requests sent are answered 200 within
 * the SLA: the latency-bounded throughput, with p95 <= SLA read as it must be once a server can
 * refuse (a 503 or an error counts as an answer past the SLA, however fast it came; SLO
 * attainment, as serving papers count goodput). --then-qps R2 --then-duration
 * S2 changes the rate without a pause (the same senders and connections): the second phase is
 * reported on its own, with its first second apart, to show how fast a server recovers when an
 * overload ends. */
#include "cli.h"

#include "../base/json.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define SENDERS 64

typedef struct target {
    char host[64];
    int port;
    char path[512];
    char get[256]; /* --get: this path, GET, instead of inferences ("" = infer) */
    int num_dense, num_tables, lookups;
    int64_t *rows;
} target;

typedef struct size_dist {
    int fixed;
    double mean, sd;
} size_dist;

typedef struct arrival {
    double t; /* scheduled, seconds on spine_now's clock */
    int size;
    int off; /* first sample of its window of the input pools */
} arrival;

typedef struct run {
    const target *tg;
    /* pools of random inputs from which bodies are cut */
    float *dense_pool;
    int32_t **value_pool;    /* per table, pool_size * lookups indices (INT32 on the wire) */
    int32_t *lengths;        /* num_tables * max_size copies of `lookups`: every query's lengths */
    int max_size, pool_size; /* each query is a random window of pool_size >= 8 x max_size */
    /* the queue of released arrivals */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    arrival *q;
    size_t qhead, qtail, qcap;
    bool done;
    /* closed loop (--concurrency): each sender sends its next request as soon as the last is
     * answered, until `until`; sizes drawn under mu */
    bool closed;
    double until;
    const struct size_dist *sd;
    spine_rng *rng;
    /* results */
    double *lat, *sched; /* latency, and the scheduled arrival it is measured from */
    int *status;         /* HTTP status, or -1 for an I/O error */
    size_t nres, rescap;
} run;

static int connect_to(const target *tg) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)tg->port)};
    inet_pton(AF_INET, tg->host, &a.sin_addr);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool write_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Send every byte of iov[0..n) (modified: advanced past what was sent). */
static bool writev_all(int fd, struct iovec *iov, int n) {
    while (n > 0) {
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)SPINE_MIN(n, 1024)};
        ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        size_t left = (size_t)w;
        while (n > 0 && left >= iov->iov_len) left -= iov->iov_len, iov++, n--;
        if (n > 0) iov->iov_base = (char *)iov->iov_base + left, iov->iov_len -= left;
    }
    return true;
}

/* Read one HTTP response; returns its status or -1. buf is scratch. */
static int read_response(int fd, spine_buf *buf) {
    buf->len = 0;
    char tmp[65536];
    size_t hdr_end = 0, need = 0;
    for (;;) {
        ssize_t r = recv(fd, tmp, sizeof tmp, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        spine_buf_append(buf, tmp, (size_t)r);
        if (buf->failed) return -1;
        if (!hdr_end) {
            char *e = strstr(buf->data, "\r\n\r\n");
            if (!e) continue;
            hdr_end = (size_t)(e - buf->data) + 4;
            const char *cl = strcasestr(buf->data, "\r\ncontent-length:");
            need = hdr_end + (cl && cl < e ? strtoull(cl + 17, NULL, 10) : 0);
        }
        if (buf->len >= need) break;
    }
    int status = 0;
    if (sscanf(buf->data, "HTTP/1.%*d %d", &status) != 1) return -1;
    return status;
}

/* A query as the pieces of its HTTP request: the request line, headers and JSON header in
 * `head`, then the binary tensors straight from the input pools (no copy of the body). Returns
 * the number of pieces in iov (2 + num_tables + 1). */
static int build_request(run *r, int size, int off, spine_buf *head, struct iovec *iov) {
    const target *tg = r->tg;
    const int T = tg->num_tables, L = tg->lookups;
    head->len = 0;
    if (tg->get[0]) { /* the transport alone: a GET with no body */
        char req[512];
        int rl =
            snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", tg->get, tg->host);
        spine_buf_append(head, req, (size_t)rl);
        iov[0] = (struct iovec){head->data, head->len};
        return 1;
    }
    size_t nd = (size_t)size * (size_t)tg->num_dense * 4, nl = (size_t)T * (size_t)size * 4,
           nv = (size_t)T * (size_t)size * (size_t)L * 4;
    char hdr[1024];
    int hl = snprintf(
        hdr, sizeof hdr,
        "{\"inputs\":[{\"name\":\"dense\",\"datatype\":\"FP32\",\"shape\":[%d,%d],"
        "\"parameters\":{\"binary_data_size\":%zu}},"
        "{\"name\":\"lengths\",\"datatype\":\"INT32\",\"shape\":[%d,%d],"
        "\"parameters\":{\"binary_data_size\":%zu}},"
        "{\"name\":\"values\",\"datatype\":\"INT32\",\"shape\":[%zu],"
        "\"parameters\":{\"binary_data_size\":%zu}}],"
        "\"outputs\":[{\"name\":\"probabilities\",\"parameters\":{\"binary_data\":true}}]}",
        size, tg->num_dense, nd, T, size, nl, nv / 4, nv);
    char req[1024];
    int rl = snprintf(req, sizeof req,
                      "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\n"
                      "Inference-Header-Content-Length: %d\r\nContent-Length: %zu\r\n\r\n",
                      tg->path, tg->host, hl, (size_t)hl + nd + nl + nv);
    spine_buf_append(head, req, (size_t)rl);
    spine_buf_append(head, hdr, (size_t)hl);
    int n = 0;
    iov[n++] = (struct iovec){head->data, head->len};
    iov[n++] = (struct iovec){r->dense_pool + (size_t)off * (size_t)tg->num_dense, nd};
    iov[n++] = (struct iovec){r->lengths, nl}; /* every bag holds `lookups` indices */
    for (int t = 0; t < T; t++)
        iov[n++] = (struct iovec){r->value_pool[t] + (size_t)off * (size_t)L,
                                  (size_t)size * (size_t)L * 4};
    return n;
}

static int draw_size(const size_dist *sd, spine_rng *rng);

static void *sender(void *arg) {
    run *r = arg;
    spine_buf head = {0}, resp = {0};
    struct iovec *iov = malloc(((size_t)r->tg->num_tables + 3) * sizeof *iov),
                 *todo = malloc(((size_t)r->tg->num_tables + 3) * sizeof *todo);
    int fd = -1;
    if (!iov || !todo) {
        free(iov);
        free(todo);
        return NULL; /* its requests stay queued for the other senders */
    }
    for (;;) {
        arrival a;
        pthread_mutex_lock(&r->mu);
        if (r->closed) {
            double now = spine_now();
            if (now >= r->until || r->qtail >= r->qcap) {
                pthread_mutex_unlock(&r->mu);
                break;
            }
            a = (arrival){now, draw_size(r->sd, r->rng), 0};
            a.off = (int)spine_rng_below(r->rng, (uint64_t)(r->pool_size - a.size + 1));
            r->qtail++;
        } else {
            while (r->qhead == r->qtail && !r->done) pthread_cond_wait(&r->cv, &r->mu);
            if (r->qhead == r->qtail) {
                pthread_mutex_unlock(&r->mu);
                break;
            }
            a = r->q[r->qhead++ % r->qcap];
        }
        pthread_mutex_unlock(&r->mu);
        int niov = build_request(r, a.size, a.off, &head, iov);
        int status = -1;
        for (int attempt = 0; attempt < 2 && status < 0; attempt++) {
            if (fd < 0) fd = connect_to(r->tg);
            if (fd < 0) break;
            memcpy(todo, iov, (size_t)niov * sizeof *iov); /* writev_all advances its copy */
            if (!head.failed && writev_all(fd, todo, niov)) status = read_response(fd, &resp);
            if (status < 0 || status == 413 ||
                strcasestr(resp.data ? resp.data : "", "connection: close")) {
                close(fd);
                fd = -1;
            }
        }
        double lat = spine_now() - a.t;
        pthread_mutex_lock(&r->mu);
        if (r->nres == r->rescap) {
            size_t cap = r->rescap ? r->rescap * 2 : 4096;
            double *nl = realloc(r->lat, cap * sizeof *nl);
            double *nt = realloc(r->sched, cap * sizeof *nt);
            int *ns = realloc(r->status, cap * sizeof *ns);
            if (nl) r->lat = nl;
            if (nt) r->sched = nt;
            if (ns) r->status = ns;
            if (nl && nt && ns) r->rescap = cap;
        }
        if (r->nres < r->rescap) {
            r->sched[r->nres] = a.t;
            r->lat[r->nres] = lat;
            r->status[r->nres++] = status;
        }
        pthread_mutex_unlock(&r->mu);
    }
    if (fd >= 0) close(fd);
    spine_buf_free(&head);
    spine_buf_free(&resp);
    free(iov);
    free(todo);
    return NULL;
}

static int draw_size(const size_dist *sd, spine_rng *rng) {
    if (sd->fixed) return sd->fixed;
    double v = sd->mean + sd->sd * spine_rng_normal(rng);
    int s = (int)lround(v);
    return s < 1 ? 1 : s > 1024 ? 1024 : s;
}

typedef struct load_result {
    double offered, achieved, p50, p95, p99, max, pct;
    size_t sent, ok, refused, errors;
    size_t within;    /* answered 200 within the SLA */
    double fail_frac; /* refused or failed, of those sent */
    double attain;    /* within / sent */
    int concurrency;  /* closed loop with this many outstanding requests; 0: open loop */
} load_result;

/* The answers to requests scheduled in [t0, t1): counts and latency percentiles (a refusal is
 * an answer, and so counts), how many were served within sla_ms; achieved = served / seconds.
 * lat is scratch for the sort. */
static void summarize(const run *r, double t0, double t1, double seconds, double percentile,
                      double sla_ms, double *lat, load_result *res) {
    size_t k = 0;
    for (size_t i = 0; i < r->nres; i++) {
        if (r->sched[i] < t0 || r->sched[i] >= t1) continue;
        lat[k++] = r->lat[i];
        if (r->status[i] == 200 && r->lat[i] * 1e3 <= sla_ms) res->within++;
        if (r->status[i] == 200)
            res->ok++;
        else if (r->status[i] == 503)
            res->refused++;
        else
            res->errors++;
    }
    res->sent = k;
    res->achieved = (double)res->ok / seconds;
    spine_sort_doubles(lat, k);
    res->p50 = spine_percentile(lat, k, 50) * 1e3;
    res->p95 = spine_percentile(lat, k, 95) * 1e3;
    res->p99 = spine_percentile(lat, k, 99) * 1e3;
    res->max = k ? lat[k - 1] * 1e3 : 0;
    res->pct = spine_percentile(lat, k, percentile) * 1e3;
    res->fail_frac = k ? (double)(k - res->ok) / (double)k : 0;
    res->attain = k ? (double)res->within / (double)k : 0;
}

/* One open-loop run at `qps` for `seconds`, then (qps2 > 0) at qps2 for seconds2 more; with
 * concurrency > 0, a closed-loop run instead: that many senders, each with one request
 * outstanding at a time (perf_analyzer's mode). res2 and first (the second phase, and its first
 * second) are filled when qps2 > 0. */
static int load_run(const target *tg, const size_dist *sd, double qps, double seconds,
                    int concurrency, double percentile, double sla_ms, uint64_t seed,
                    load_result *res, double qps2, double seconds2, load_result *res2,
                    load_result *first) {
    run r = {.tg = tg, .closed = concurrency > 0, .sd = sd};
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    spine_rng rng;
    spine_rng_seed(&rng, seed);
    r.max_size = sd->fixed ? sd->fixed : 1024;
    /* distinct inputs per query (a fixed one would keep its rows cache-hot) */
    r.pool_size = SPINE_MAX(8 * r.max_size, 8192);
    /* but no more than ~256 MB of indices (wide models), and never below one query */
    size_t per_sample =
        (size_t)SPINE_MAX(1, tg->num_tables) * (size_t)SPINE_MAX(1, tg->lookups) * 4;
    size_t cap = ((size_t)256 << 20) / per_sample;
    if ((size_t)r.pool_size > cap) r.pool_size = (int)SPINE_MAX(cap, (size_t)r.max_size);
    r.dense_pool = malloc((size_t)r.pool_size * (size_t)tg->num_dense * 4);
    r.value_pool = calloc((size_t)tg->num_tables, sizeof *r.value_pool);
    r.lengths = malloc(((size_t)tg->num_tables * (size_t)r.max_size + 1) * 4);
    if (qps2 <= 0) seconds2 = 0;
    r.qcap = r.closed ? (size_t)1 << 24 : (size_t)((qps * seconds + qps2 * seconds2) * 1.5) + 1024;
    r.q = r.closed ? NULL : malloc(r.qcap * sizeof *r.q);
    r.rng = &rng;
    if (!r.dense_pool || !r.value_pool || !r.lengths || (!r.closed && !r.q)) return 1;
    for (size_t i = 0; i < (size_t)tg->num_tables * (size_t)r.max_size; i++)
        r.lengths[i] = tg->lookups;
    for (size_t i = 0; i < (size_t)r.pool_size * (size_t)tg->num_dense; i++)
        r.dense_pool[i] = spine_rng_uniform(&rng);
    for (int t = 0; t < tg->num_tables; t++) {
        size_t n = (size_t)r.pool_size * (size_t)tg->lookups;
        r.value_pool[t] = malloc((n + 1) * 4);
        if (!r.value_pool[t]) return 1;
        for (size_t i = 0; i < n; i++) /* tables beyond 2^31 rows would need INT64 */
            r.value_pool[t][i] = (int32_t)spine_rng_below(
                &rng, (uint64_t)SPINE_MIN(tg->rows[t], (int64_t)INT32_MAX));
    }
    pthread_t th[SENDERS];
    int nsend = r.closed ? concurrency : SENDERS;
    double t0 = spine_now();
    r.until = t0 + seconds; /* closed loop: its senders start at once */
    for (int i = 0; i < nsend; i++) pthread_create(&th[i], NULL, sender, &r);
    if (!r.closed) t0 = spine_now() + 0.05; /* open loop: the schedule starts after the senders */
    double t = t0;
    size_t sent = 0;
    while (!r.closed && t < t0 + seconds + seconds2 && sent < r.qcap) {
        double u = ((double)(spine_rng_next(&rng) >> 11) + 1.0) * 0x1p-53;
        t += -log(u) / (t < t0 + seconds ? qps : qps2);
        if (t >= t0 + seconds + seconds2) break;
        double now = spine_now();
        if (t > now) {
            double w = t - now;
            struct timespec ts = {(time_t)w, (long)((w - (double)(time_t)w) * 1e9)};
            nanosleep(&ts, NULL);
        }
        pthread_mutex_lock(&r.mu);
        arrival a = {t, draw_size(sd, &rng), 0};
        a.off = (int)spine_rng_below(&rng, (uint64_t)(r.pool_size - a.size + 1));
        r.q[r.qtail++ % r.qcap] = a;
        pthread_cond_signal(&r.cv);
        pthread_mutex_unlock(&r.mu);
        sent++;
    }
    pthread_mutex_lock(&r.mu);
    r.done = true;
    pthread_cond_broadcast(&r.cv);
    pthread_mutex_unlock(&r.mu);
    for (int i = 0; i < nsend; i++) pthread_join(th[i], NULL);
    double wall = spine_now() - t0;
    if (r.closed) sent = r.nres;
    memset(res, 0, sizeof *res);
    res->offered = r.closed ? 0 : qps;
    res->concurrency = concurrency;
    double *scratch = malloc((r.nres + 1) * sizeof *scratch);
    int rc = 0;
    if (!scratch) {
        rc = 1;
    } else if (seconds2 > 0) { /* each phase by its schedule */
        summarize(&r, t0, t0 + seconds, seconds, percentile, sla_ms, scratch, res);
        memset(res2, 0, sizeof *res2);
        memset(first, 0, sizeof *first);
        res2->offered = first->offered = qps2;
        summarize(&r, t0 + seconds, INFINITY, seconds2, percentile, sla_ms, scratch, res2);
        double s1 = SPINE_MIN(1.0, seconds2);
        summarize(&r, t0 + seconds, t0 + seconds + s1, s1, percentile, sla_ms, scratch, first);
    } else { /* every answer, achieved over the whole wall time (drain included) */
        summarize(&r, -INFINITY, INFINITY, wall, percentile, sla_ms, scratch, res);
        res->sent = sent;
        res->fail_frac = sent ? (double)(sent - res->ok) / (double)sent : 0;
        res->attain = sent ? (double)res->within / (double)sent : 0;
    }
    free(scratch);
    free(r.sched);
    free(r.lat);
    free(r.status);
    free(r.q);
    free(r.dense_pool);
    free(r.lengths);
    for (int t2 = 0; t2 < tg->num_tables; t2++) free(r.value_pool[t2]);
    free(r.value_pool);
    return rc;
}

/* GET the model's metadata for its shapes and table sizes. */
static int fetch_target(target *tg, const char *model, spine_error *err) {
    int fd = connect_to(tg);
    if (fd < 0) {
        spine_fail(err, SPINE_ERR_IO, "cannot connect to %s:%d", tg->host, tg->port);
        return -1;
    }
    char req[256];
    int n = snprintf(req, sizeof req, "GET /v2/models/%s HTTP/1.1\r\nHost: %s\r\n\r\n", model,
                     tg->host);
    spine_buf resp = {0};
    int st = write_all(fd, req, (size_t)n) ? read_response(fd, &resp) : -1;
    close(fd);
    if (st != 200) {
        spine_buf_free(&resp);
        spine_fail(err, SPINE_ERR_IO, "GET /v2/models/%s: status %d", model, st);
        return -1;
    }
    const char *body = strstr(resp.data, "\r\n\r\n") + 4;
    json_doc d;
    int rc = -1;
    if (json_parse(&d, body, strlen(body), err) == SPINE_OK) {
        const json_node *root = json_root(&d), *ins = json_obj_get(&d, root, "inputs"),
                        *par = json_obj_get(&d, root, "parameters");
        const json_node *rows = par ? json_obj_get(&d, par, "table_rows") : NULL,
                        *lk = par ? json_obj_get(&d, par, "lookups_per_table") : NULL;
        const json_node *dn = ins ? json_child(&d, ins) : NULL;
        const json_node *shape = dn ? json_obj_get(&d, dn, "shape") : NULL;
        int64_t v;
        if (shape && shape->count == 2 &&
            json_get_i64(&d, json_next(&d, json_child(&d, shape)), &v) && rows &&
            rows->type == JSON_ARRAY && rows->count > 0 && lk && json_get_i64(&d, lk, &v)) {
            json_get_i64(&d, json_next(&d, json_child(&d, shape)), &v);
            tg->num_dense = (int)v;
            json_get_i64(&d, lk, &v);
            tg->lookups = v > 0 ? (int)v : 1;
            tg->num_tables = (int)rows->count;
            tg->rows = calloc(rows->count, sizeof *tg->rows);
            int t = 0;
            rc = 0;
            for (const json_node *e = json_child(&d, rows); e && tg->rows;
                 e = json_next(&d, e), t++)
                if (!json_get_i64(&d, e, &tg->rows[t]) || tg->rows[t] < 1) rc = -1;
            if (!tg->rows) rc = -1;
        }
        if (rc) spine_fail(err, SPINE_ERR_FORMAT, "model metadata without spine's table_rows");
        json_free(&d);
    }
    spine_buf_free(&resp);
    return rc;
}

/* the second phase (--then-qps) and its first second */
static void print_then(const load_result *r, const load_result *f, bool json, double sla) {
    if (json)
        printf("{\"bench\":\"load\",\"phase\":\"then\",\"offered_qps\":%.2f,"
               "\"achieved_qps\":%.2f,\"sent\":%zu,\"ok\":%zu,\"refused_503\":%zu,\"errors\":%zu,"
               "\"p50_ms\":%.3f,\"p95_ms\":%.3f,\"p99_ms\":%.3f,\"first_s_sent\":%zu,"
               "\"first_s_refused_503\":%zu,\"first_s_errors\":%zu,\"first_s_p95_ms\":%.3f,"
               "\"first_s_max_ms\":%.3f,\"sla_ms\":%g}\n",
               r->offered, r->achieved, r->sent, r->ok, r->refused, r->errors, r->p50, r->p95,
               r->p99, f->sent, f->refused, f->errors, f->p95, f->max, sla);
    else
        printf("then %.1f qps: achieved %.1f qps: %zu sent, %zu ok, %zu refused (503), %zu errors; "
               "p50 %.3f ms, p95 %.3f ms, p99 %.3f ms; its first second: %zu sent, %zu refused, "
               "p95 %.3f ms, max %.3f ms\n",
               r->offered, r->achieved, r->sent, r->ok, r->refused, r->errors, r->p50, r->p95,
               r->p99, f->sent, f->refused, f->p95, f->max);
    fflush(stdout);
}

static void print_result(const load_result *r, bool json, double sla) {
    if (json)
        printf("{\"bench\":\"load\",\"offered_qps\":%.2f,\"concurrency\":%d,"
               "\"achieved_qps\":%.2f,\"sent\":%zu,"
               "\"ok\":%zu,\"refused_503\":%zu,\"errors\":%zu,\"p50_ms\":%.3f,\"p95_ms\":%.3f,"
               "\"p99_ms\":%.3f,\"sla_ms\":%g,\"within_sla\":%zu,\"within_sla_frac\":%.4f}\n",
               r->offered, r->concurrency, r->achieved, r->sent, r->ok, r->refused, r->errors,
               r->p50, r->p95, r->p99, sla, r->within, r->attain);
    else {
        if (r->concurrency)
            printf("closed loop, %d outstanding", r->concurrency);
        else
            printf("offered %.1f qps", r->offered);
        printf(", achieved %.1f qps: %zu sent, %zu ok, %zu refused (503), %zu "
               "errors; p50 %.3f ms, p95 %.3f ms, p99 %.3f ms; %.2f%% served within %g ms\n",
               r->achieved, r->sent, r->ok, r->refused, r->errors, r->p50, r->p95, r->p99,
               100 * r->attain, sla);
    }
    fflush(stdout);
}

int cmd_load(int argc, char **argv) {
    cli_opt o[] = {
        {"url", true, "server base URL (default http://127.0.0.1:8000)", NULL},
        {"model", true, "model name (default 'default')", NULL},
        {"qps", true, "offered arrival rate (default 10)", NULL},
        {"duration", true, "seconds per run (default 10)", NULL},
        {"sizes", true, "samples per query: normal:MEAN:SD (default normal:165:16) or fixed:N",
         NULL},
        {"concurrency", true,
         "closed loop instead: N requests outstanding, each sent when the last is answered", NULL},
        {"find-max", false,
         "search the highest rate at which --percentile % of the requests sent are served (200) "
         "within the SLA; refusals count against it",
         NULL},
        {"sla-ms", true,
         "latency target (default 100); each run reports the share served within it", NULL},
        {"percentile", true, "percentile for --find-max (default 95)", NULL},
        {"then-qps", true,
         "after --duration, go on at this rate without a pause (reported apart, with its first "
         "second: recovery from an overload)",
         NULL},
        {"then-duration", true, "seconds at --then-qps (default 5)", NULL},
        {"seed", true, "random seed (default 1)", NULL},
        {"get", true,
         "send GET PATH (e.g. /v2/health/ready) instead of inferences: the HTTP round trip "
         "alone, for comparison",
         NULL},
        {"json", false, "JSON lines", NULL},
        {"help", false, "this text", NULL},
    };
    int n = (int)SPINE_ARRAY_LEN(o), npos;
    char *pos[1];
    if (cli_parse("load", argc, argv, o, n, pos, 0, &npos)) return 2;
    if (cli_get(o, n, "help")) {
        cli_usage("usage: spine load --url URL [--qps R | --concurrency N] [--duration S] "
                  "[--sizes normal:165:16] [--find-max --sla-ms S --percentile 95] "
                  "[--then-qps R2 --then-duration S2]",
                  o, n);
        return 0;
    }
    const char *url = cli_get(o, n, "url"), *model = cli_get(o, n, "model"), *v;
    if (!url) url = "http://127.0.0.1:8000";
    if (!model) model = "default";
    target tg = {0};
    if (sscanf(url, "http://%63[^:/]:%d", tg.host, &tg.port) < 1) {
        fprintf(stderr, "spine load: --url must look like http://HOST:PORT\n");
        return 2;
    }
    if (!tg.port) tg.port = 80;
    if (strcmp(tg.host, "localhost") == 0) snprintf(tg.host, sizeof tg.host, "127.0.0.1");
    snprintf(tg.path, sizeof tg.path, "/v2/models/%s/infer", model);
    if ((v = cli_get(o, n, "get"))) {
        if (v[0] != '/' || strlen(v) >= sizeof tg.get || strpbrk(v, " \r\n")) {
            fprintf(stderr, "spine load: --get takes a path such as /v2/health/ready\n");
            return 2;
        }
        snprintf(tg.get, sizeof tg.get, "%s", v);
    }
    double qps = 10, duration = 10, sla = 100, pctl = 95;
    long long seed = 1;
    size_dist sd = {0, 165, 16};
    if ((v = cli_get(o, n, "qps")) && !cli_double("--qps", v, 0.01, 1e6, &qps)) return 2;
    if ((v = cli_get(o, n, "duration")) && !cli_double("--duration", v, 0.1, 86400, &duration))
        return 2;
    if ((v = cli_get(o, n, "sla-ms")) && !cli_double("--sla-ms", v, 0.01, 1e7, &sla)) return 2;
    if ((v = cli_get(o, n, "percentile")) && !cli_double("--percentile", v, 1, 100, &pctl))
        return 2;
    if ((v = cli_get(o, n, "seed")) && !cli_int("--seed", v, 0, INT64_MAX, &seed)) return 2;
    double qps2 = 0, duration2 = 5;
    if ((v = cli_get(o, n, "then-qps")) && !cli_double("--then-qps", v, 0.01, 1e6, &qps2)) return 2;
    if ((v = cli_get(o, n, "then-duration")) &&
        !cli_double("--then-duration", v, 0.1, 86400, &duration2))
        return 2;
    if (cli_get(o, n, "then-duration") && !qps2) {
        fprintf(stderr, "spine load: --then-duration goes with --then-qps\n");
        return 2;
    }
    if ((v = cli_get(o, n, "sizes"))) {
        int f;
        if (sscanf(v, "normal:%lf:%lf", &sd.mean, &sd.sd) == 2 && sd.mean >= 1 && sd.sd >= 0) {
            sd.fixed = 0;
        } else if (sscanf(v, "fixed:%d", &f) == 1 && f >= 1 && f <= 1024) {
            sd.fixed = f;
        } else {
            fprintf(stderr, "spine load: --sizes must be normal:MEAN:SD or fixed:N (N <= 1024)\n");
            return 2;
        }
    }
    long long conc = 0;
    if ((v = cli_get(o, n, "concurrency")) && !cli_int("--concurrency", v, 1, SENDERS, &conc))
        return 2;
    if (conc && (cli_get(o, n, "find-max") || cli_get(o, n, "qps") || qps2)) {
        fprintf(stderr,
                "spine load: --concurrency is a closed loop: no --qps, --then-qps or --find-max\n");
        return 2;
    }
    if (qps2 && (cli_get(o, n, "find-max") || tg.get[0])) {
        fprintf(stderr,
                "spine load: --then-qps is a second phase of one run: no --find-max or --get\n");
        return 2;
    }
    bool json = cli_get(o, n, "json") != NULL;
    spine_error err = {0};
    if (fetch_target(&tg, model, &err)) {
        cli_print_error("load", &err);
        return 1;
    }
    load_result r, r2, first;
    int rc = 0;
    if (!cli_get(o, n, "find-max")) {
        if (load_run(&tg, &sd, qps, duration, (int)conc, pctl, sla, (uint64_t)seed, &r, qps2,
                     duration2, &r2, &first))
            rc = 1;
        else {
            print_result(&r, json, sla);
            if (qps2) print_then(&r2, &first, json, sla);
        }
    } else {
        /* double until the SLA breaks, then bisect; a rate passes when at least pctl% of the
         * requests sent were served within the SLA (refusals and errors count against it) */
        double lo = 0, hi = qps, best_ach = 0;
        bool bounded = false;
        for (int step = 0; step < 16 && !rc; step++) {
            double rate = bounded ? (lo + hi) / 2 : hi;
            if (bounded && hi - lo < 0.05 * hi) break;
            if (load_run(&tg, &sd, rate, duration, 0, pctl, sla, (uint64_t)seed + (uint64_t)step,
                         &r, 0, 0, NULL, NULL)) {
                rc = 1;
                break;
            }
            bool pass = r.sent > 0 && 100 * r.attain >= pctl;
            if (!json)
                printf("%s rate %.1f: %.2f%% served within %g ms (p%g of the answers %.2f ms, "
                       "%.1f%% refused or failed) -> %s\n",
                       bounded ? "bisect" : "probe", rate, 100 * r.attain, sla, pctl, r.pct,
                       100 * r.fail_frac, pass ? "within SLA" : "over");
            else
                print_result(&r, true, sla);
            fflush(stdout);
            if (pass) {
                lo = rate;
                best_ach = r.achieved;
                if (!bounded) hi = rate * 2;
            } else {
                hi = rate;
                bounded = true;
            }
        }
        if (!rc) {
            if (json)
                printf("{\"bench\":\"load-max\",\"max_qps\":%.2f,\"achieved_qps\":%.2f,"
                       "\"sla_ms\":%g,\"percentile\":%g,\"mean_size\":%g}\n",
                       lo, best_ach, sla, pctl, sd.fixed ? (double)sd.fixed : sd.mean);
            else
                printf("latency-bounded throughput: %.1f qps (p%g <= %g ms), %.0f samples/s\n", lo,
                       pctl, sla, lo * (sd.fixed ? (double)sd.fixed : sd.mean));
        }
    }
    free(tg.rows);
    return rc;
}
