/* fmapeak.c: measuring this machine's floating-point peak: every thread runs independent chains
 * of fused multiply-adds, 16 lanes wide with AVX-512 and 8 with AVX2/FMA (enough chains to cover
 * the FMA latency on two ports), counted as 2 FLOP per lane: the widest vectors the CPU runs
 * (SPINE_ISA caps them). The ceiling prefill and GEMM figures are quoted
 * against. */
#include "fmapeak.h"

#include "kernels.h"
#include "../base/pool.h"

#include <stdatomic.h>
#include <stdlib.h>

double fmapeak_chains_avx2(uint64_t iters);
double fmapeak_chains_avx512(uint64_t iters);

/* portable fallback: scalar chains the compiler may vectorise */
static double chains_scalar(uint64_t iters) {
    float a[16], b = 0.999999f, c = 1e-7f;
    for (int i = 0; i < 16; i++) a[i] = (float)i;
    for (uint64_t it = 0; it < iters; it++)
        for (int i = 0; i < 16; i++) a[i] = a[i] * b + c;
    double s = 0;
    for (int i = 0; i < 16; i++) s += a[i];
    return s;
}

typedef struct peak_arg {
    uint64_t iters;
    int avx2, avx512;
    double sink[256];
    atomic_int started;
} peak_arg;

static void peak_task(void *arg, int task, int thread) {
    peak_arg *p = arg;
    (void)thread;
#if defined(__x86_64__) && defined(SPINE_HAVE_AVX2)
    if (p->avx512) {
        p->sink[task & 255] = fmapeak_chains_avx512(p->iters);
        return;
    }
    if (p->avx2) {
        p->sink[task & 255] = fmapeak_chains_avx2(p->iters);
        return;
    }
#endif
    p->sink[task & 255] = chains_scalar(p->iters);
}

spine_status fmapeak_measure(spine_pool *pool, int threads, double seconds, double *flops,
                             spine_error *err) {
    if (threads < 1 || threads > 256)
        return spine_fail(err, SPINE_ERR_INVALID, "threads must be 1..256");
    peak_arg a = {.iters = 1 << 20,
                  .avx2 = sls_best_isa() >= SLS_ISA_AVX2,
                  .avx512 = sls_best_isa() >= SLS_ISA_AVX512};
    /* per iteration: 12 chains x 16 lanes (AVX-512) or 8 (AVX2) x 2 FLOP, or 16 x 2 (scalar) */
    double per_iter = a.avx512 ? 12.0 * 16 * 2 : a.avx2 ? 12.0 * 8 * 2 : 16.0 * 2;
    double best = 0.0, t_end = spine_now() + seconds;
    do {
        double t0 = spine_now();
        spine_pool_run(threads > 1 ? pool : NULL, threads, peak_task, &a);
        double dt = spine_now() - t0;
        double f = per_iter * (double)a.iters * threads / dt;
        best = f > best ? f : best;
        if (dt < 0.05) a.iters *= 2;
    } while (spine_now() < t_end);
    *flops = best;
    return SPINE_OK;
}
