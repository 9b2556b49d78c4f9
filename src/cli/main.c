/* main.c: the spine command line: dispatch to subcommands. */
#include "cli.h"

#include <stdio.h>

static void usage(void) {
    printf("spine %s: sparse inference for recommendation and Mixture-of-Experts models\n\n"
           "usage: spine <command> [options]\n\n"
           "commands:\n"
           "  serve         serve models over HTTP (Open Inference Protocol)\n"
           "  load          open-loop load generator for a server (latency-bounded throughput)\n"
           "  model gen     generate a model folder from a preset (tiny, rmc1, rmc2, rmc3, "
           "dlrm-kaggle)\n"
           "  model info    describe a model folder\n"
           "  infer         run a model on a Criteo TSV or safetensors batch file\n"
           "  trace gen     synthetic DLRM query traces (Zipf skew, temporal locality)\n"
           "  profile       row frequencies of a trace: a profile, hot-tier hit rates\n"
           "  bench         measure samples/s and latency percentiles per batch size\n"
           "  moe gen       generate a Mixture-of-Experts model folder (moe-tiny, mixtral-mini, "
           "moe-lm)\n"
           "  moe info      describe a MoE model folder\n"
           "  moe run       prefill + greedy decode with static or dynamic gating\n"
           "  moe trace gen synthetic routing traces\n"
           "  moe cache-sim replay a routing trace through an expert cache (or --sweep)\n"
           "  moe place     place experts on worker groups, judged on held-out batches\n"
           "  demo          generate the built-in default model and run a sample batch\n"
           "  version       print the version\n\n"
           "'spine <command> --help' describes a command's options.\n",
           spine_version());
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage();
        return 2;
    }
    const char *c = argv[1];
    if (strcmp(c, "model") == 0) return cmd_model(argc - 2, argv + 2);
    if (strcmp(c, "infer") == 0) return cmd_infer(argc - 2, argv + 2);
    if (strcmp(c, "bench") == 0) return cmd_bench(argc - 2, argv + 2);
    if (strcmp(c, "demo") == 0) return cmd_demo(argc - 2, argv + 2);
    if (strcmp(c, "serve") == 0) return cmd_serve(argc - 2, argv + 2);
    if (strcmp(c, "moe") == 0) return cmd_moe(argc - 2, argv + 2);
    if (strcmp(c, "trace") == 0) return cmd_trace(argc - 2, argv + 2);
    if (strcmp(c, "profile") == 0) return cmd_profile(argc - 2, argv + 2);
    if (strcmp(c, "load") == 0) return cmd_load(argc - 2, argv + 2);
    if (strcmp(c, "version") == 0 || strcmp(c, "--version") == 0) {
        printf("spine %s\n", spine_version());
        return 0;
    }
    if (strcmp(c, "help") == 0 || strcmp(c, "--help") == 0 || strcmp(c, "-h") == 0) {
        usage();
        return 0;
    }
    fprintf(stderr, "spine: unknown command '%s'\n\n", c);
    usage();
    return 2;
}
