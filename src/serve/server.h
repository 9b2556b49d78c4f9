/* server.h: `spine serve` (server.c). */
#ifndef SPINE_SERVER_H
#define SPINE_SERVER_H

#include "serve.h"

#define SERVER_MAX_MODELS 16

typedef struct server_opts {
    const char *host;
    int port;
    const char *models[SERVER_MAX_MODELS]; /* folders; none: the built-in default model */
    int nmodels;
    int workers, threads, max_batch, max_queue;
    int inline_max; /* see batcher_run_inline */
    double max_delay_us, sla_ms;
    int http_threads, max_connections, idle_timeout_s;
    size_t max_body, max_header;
    double drain_timeout_s;
    double idle_poll_ms; /* keep the CPUs from halting this long after each request (0: off) */
    /* MoE models: expert buffering, prefetch and expert parallelism (see docs/MOE.md) */
    int expert_slots, expert_policy;
    uint64_t expert_budget; /* bytes for all MoE layers' experts, as slots (0: expert_slots) */
    double slow_gbps;       /* < 0: moe_default_slow_gbps */
    bool expert_prefetch;
    const char *expert_placement; /* a placement file, or NULL */
} server_opts;

/* Serve until SIGTERM/SIGINT (then drain: stop accepting, answer everything accepted, exit).
 * SIGHUP reloads every model from its folder. Returns the process exit status. */
int server_run(const server_opts *o);

#endif
