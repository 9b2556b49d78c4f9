/* cmd_serve.c: `spine serve`: options for the Open Inference Protocol server. */
#include "cli.h"

#include "../moe/moe_trace.h"

#include "../serve/server.h"

#include <stdio.h>

int cmd_serve(int argc, char **argv) {
    cli_opt o[] = {
        {"model", true,
         "model folder, served under its folder's name (repeatable; none: the "
         "built-in default model, served as 'default')",
         NULL},
        {"host", true, "IPv4 address to bind (default 127.0.0.1)", NULL},
        {"port", true, "TCP port (default 8000; 0 picks a free one)", NULL},
        {"workers", true, "worker instances (default 1)", NULL},
        {"threads", true, "threads per worker (default 2)", NULL},
        {"max-batch", true, "samples per merged batch (default 256)", NULL},
        {"max-delay-us", true,
         "longest wait for a batch to fill, while a request of the usual size could still join it "
         "(default 500)",
         NULL},
        {"inline-max", true,
         "requests of at most this many samples run at once on the HTTP thread when a worker "
         "is idle and nothing is queued (default 16; 0: never)",
         NULL},
        {"sla-ms", true, "latency target: each request's deadline (default 100)", NULL},
        {"max-queue", true, "requests waiting at most (default 1024)", NULL},
        {"max-body-mb", true, "largest request body (default 64)", NULL},
        {"max-connections", true, "open connections at most (default 4096)", NULL},
        {"idle-timeout-s", true, "close connections idle this long (default 30)", NULL},
        {"http-threads", true, "threads reading and writing HTTP (default 2)", NULL},
        {"drain-timeout-s", true, "longest wait for accepted requests on SIGTERM (default 30)",
         NULL},
        {"idle-poll-ms", true,
         "keep the CPUs the server may run on from halting this long after answering a request of "
         ">= 32 samples, with one lowest-priority spinning thread per CPU (default 0: off; "
         "measure before turning it on: on a 2-vCPU VM it cost the server more than it gave)",
         NULL},
        {"expert-budget", true,
         "MoE models: fast-tier bytes for all MoE layers' experts (e.g. 512M), as slots", NULL},
        {"expert-slots", true, "MoE models: K fast-tier experts per MoE layer (default: all)",
         NULL},
        {"expert-policy", true, "MoE models: eviction lifo (default) | fifo | lru | lfu", NULL},
        {"slow-gbps", true,
         "MoE models: throttle expert copies to this GB/s (default 12 for weights in memory, 0 = "
         "unthrottled for a mapped file)",
         NULL},
        {"expert-prefetch", false, "MoE models: predict and preload the next layer's experts",
         NULL},
        {"expert-placement", true, "MoE models: run experts on worker groups by this file", NULL},
        {"help", false, "this text", NULL},
    };
    int n = (int)SPINE_ARRAY_LEN(o), npos;
    char *pos[1];
    /* --model may repeat: collect by hand before the generic parser sees it */
    server_opts so = {.host = "127.0.0.1",
                      .port = 8000,
                      .workers = 1,
                      .threads = 2,
                      .max_batch = 256,
                      .max_queue = 1024,
                      .max_delay_us = 500,
                      .inline_max = 16,
                      .sla_ms = 100,
                      .http_threads = 2,
                      .max_connections = 4096,
                      .idle_timeout_s = 30,
                      .max_body = (size_t)64 << 20,
                      .max_header = 256 << 10,
                      .drain_timeout_s = 30,
                      .idle_poll_ms = 0,
                      .slow_gbps = -1};
    char *rest[256];
    int nrest = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) {
            if (so.nmodels == SERVER_MAX_MODELS) {
                fprintf(stderr, "spine serve: at most %d models\n", SERVER_MAX_MODELS);
                return 2;
            }
            so.models[so.nmodels++] = argv[++i];
        } else if (nrest < 256) {
            rest[nrest++] = argv[i];
        }
    }
    if (cli_parse("serve", nrest, rest, o, n, pos, 0, &npos)) return 2;
    if (cli_get(o, n, "help")) {
        cli_usage("usage: spine serve [--model DIR]... [--host 127.0.0.1] [--port 8000] "
                  "[--workers N --threads T] [--max-batch B --max-delay-us D] [--sla-ms S]",
                  o, n);
        return 0;
    }
    const char *v;
    long long x;
    double d;
    if ((v = cli_get(o, n, "host"))) so.host = v;
#define INTOPT(name, field, lo, hi)                                                                \
    if ((v = cli_get(o, n, name))) {                                                               \
        if (!cli_int("--" name, v, lo, hi, &x)) return 2;                                          \
        so.field = (int)x;                                                                         \
    }
    INTOPT("port", port, 0, 65535)
    INTOPT("workers", workers, 1, 64)
    INTOPT("threads", threads, 1, 256)
    INTOPT("max-batch", max_batch, 1, 1 << 16)
    INTOPT("max-queue", max_queue, 1, 1 << 20)
    INTOPT("max-connections", max_connections, 1, 1 << 20)
    INTOPT("idle-timeout-s", idle_timeout_s, 1, 86400)
    INTOPT("http-threads", http_threads, 1, 64)
    INTOPT("inline-max", inline_max, 0, 1 << 20)
#undef INTOPT
    if ((v = cli_get(o, n, "max-body-mb"))) {
        if (!cli_int("--max-body-mb", v, 1, 4096, &x)) return 2;
        so.max_body = (size_t)x << 20;
    }
    if ((v = cli_get(o, n, "max-delay-us"))) {
        if (!cli_double("--max-delay-us", v, 0, 1e7, &d)) return 2;
        so.max_delay_us = d;
    }
    if ((v = cli_get(o, n, "sla-ms"))) {
        if (!cli_double("--sla-ms", v, 0.01, 3.6e6, &d)) return 2;
        so.sla_ms = d;
    }
    if ((v = cli_get(o, n, "drain-timeout-s"))) {
        if (!cli_double("--drain-timeout-s", v, 0, 3600, &d)) return 2;
        so.drain_timeout_s = d;
    }
    if ((v = cli_get(o, n, "idle-poll-ms"))) {
        if (!cli_double("--idle-poll-ms", v, 0, 60e3, &d)) return 2;
        so.idle_poll_ms = d;
    }
    if ((v = cli_get(o, n, "expert-budget"))) {
        if (cli_get(o, n, "expert-slots")) {
            fprintf(stderr, "spine serve: --expert-budget or --expert-slots, not both\n");
            return 2;
        }
        if (!cli_bytes("--expert-budget", v, &so.expert_budget)) return 2;
    }
    if ((v = cli_get(o, n, "expert-slots"))) {
        if (!cli_int("--expert-slots", v, 1, 4096, &x)) return 2;
        so.expert_slots = (int)x;
    }
    if ((v = cli_get(o, n, "expert-policy"))) {
        moe_policy p;
        if (moe_policy_parse(v, &p) || p == MOE_POLICY_BELADY) {
            fprintf(stderr, "spine serve: --expert-policy must be lifo, fifo, lru or lfu\n");
            return 2;
        }
        so.expert_policy = (int)p;
    }
    if ((v = cli_get(o, n, "slow-gbps"))) {
        if (!cli_double("--slow-gbps", v, 0, 1e4, &d)) return 2;
        so.slow_gbps = d;
    }
    so.expert_prefetch = cli_get(o, n, "expert-prefetch") != NULL;
    so.expert_placement = cli_get(o, n, "expert-placement");
    return server_run(&so);
}
