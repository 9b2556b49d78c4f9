/* metrics.c: counters, histograms (lock-free observe), the recent-latency window. */
#include "serve.h"

static void hist_init(histogram *h, const double *le, int n) {
    h->n = SPINE_MIN(n, HIST_BUCKETS);
    for (int i = 0; i < h->n; i++) h->le[i] = le[i];
    for (int i = 0; i <= HIST_BUCKETS; i++) atomic_init(&h->count[i], 0);
    atomic_init(&h->sum, 0.0);
}

void hist_observe(histogram *h, double v) {
    int i = 0;
    while (i < h->n && v > h->le[i]) i++;
    atomic_fetch_add_explicit(&h->count[i], 1, memory_order_relaxed);
    double old = atomic_load_explicit(&h->sum, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&h->sum, &old, old + v, memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}

void metrics_init(metrics *m, double sla_s, int max_batch) {
    memset(m, 0, sizeof *m);
    /* latency buckets are fractions of the SLA, so that the SLA itself is a boundary */
    static const double frac[] = {0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8,
                                  0.9,   1.0,  1.1,  1.25, 1.5, 2,   3,   5,   10};
    double le[HIST_BUCKETS];
    int n = (int)SPINE_ARRAY_LEN(frac);
    for (int i = 0; i < n; i++) le[i] = frac[i] * sla_s;
    hist_init(&m->queue_s, le, n);
    hist_init(&m->compute_s, le, n);
    hist_init(&m->total_s, le, n);
    int nb = 0;
    for (double b = 1; b < max_batch && nb < HIST_BUCKETS - 1; b *= 2) le[nb++] = b;
    le[nb++] = max_batch;
    hist_init(&m->batch_size, le, nb);
    pthread_mutex_init(&m->window_mu, NULL);
}

void metrics_request_done(metrics *m, double total_s, uint32_t samples) {
    hist_observe(&m->total_s, total_s);
    pthread_mutex_lock(&m->window_mu);
    m->window[m->window_n % WINDOW] = total_s;
    m->window_t[m->window_n % WINDOW] = spine_now();
    m->window_samples[m->window_n % WINDOW] = samples;
    m->window_n++;
    pthread_mutex_unlock(&m->window_mu);
}

const char *fail_reason_name(fail_reason r) {
    static const char *names[FAIL_COUNT] = {"bad_request", "not_found", "too_large",
                                            "overload",    "deadline",  "internal"};
    return (unsigned)r < FAIL_COUNT ? names[r] : "unknown";
}
