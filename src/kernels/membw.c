/* membw.c: the memory-limit probe behind `spine bench membw` (see membw.h). */
#include "membw.h"

#include "../base/pool.h"
#include "kernels.h"

#include <stdio.h>
#include <stdlib.h>

uint64_t membw_seq_avx2(const uint8_t *base, size_t bytes, size_t ahead);

#define RING 256 /* ring of addresses generated ahead (the largest prefetch distance) */
/* Lines kept in flight per thread, and whether they are prefetched into L1 or L2. Which
 * saturates memory depends on the core (128 lines into L1 on a 2-vCPU AMD EPYC; an Intel core
 * runs out of L1 fill buffers and does better into L2), so the probe tries each and keeps the
 * best: it is a bound, not a typical rate. */
static const unsigned in_flight[] = {32, 64, 128, 256};

double membw_lines_per_row(size_t r) {
    if (r == 0) return 0;
    size_t a = r % 64, b = 64; /* rows start at offsets k*r mod 64: period 64 / gcd(r, 64) */
    while (a) {
        size_t t = b % a;
        b = a;
        a = t;
    }
    size_t period = 64 / b;
    double sum = 0;
    for (size_t k = 0; k < period; k++) sum += (double)(((k * r) % 64 + r - 1) / 64 + 1);
    return sum / (double)period;
}

typedef struct job {
    const uint8_t *buf;
    size_t bytes, row_bytes;
    int threads;
    double seconds;
    int mode;          /* 0 sequential, 1 random rows */
    unsigned inflight; /* random rows: lines in flight per thread */
    bool l2;           /* random rows: prefetch into L2 rather than L1 */
    size_t ahead;      /* sequential (AVX2): prefetch this far ahead in each stream, or 0 */
    double result[256];
} job;

static inline uint64_t xs(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* A prefetch into L1 (prefetcht0) or L2 (prefetcht1); the branch is on a constant per run.
 * always_inline: GCC may delete a call to a helper that only prefetches (matmul_avx512.c). */
static inline __attribute__((always_inline)) void pf_line(const void *p, bool l2) {
    if (l2)
        __builtin_prefetch(p, 0, 2);
    else
        __builtin_prefetch(p, 0, 3);
}

/* A random number in [0, n) by a multiply (Lemire's reduction): a 64-bit division per row
 * took ~40 cycles, enough to make the probe slower than the kernels it bounds. */
static inline size_t below(uint64_t *s, size_t n) {
    return (size_t)(((unsigned __int128)xs(s) * n) >> 64);
}

/* Random reads go to one window of WINDOW bytes at a time, 4096 rows per window before the
 * next (the windows cycle over the whole buffer). A lookup kernel reads one table at a time,
 * and a 1 GiB table's 2 MiB pages fit the TLB; rows drawn from all of an 8 GiB buffer at once
 * missed the TLB and read 10-20% slower than the kernels they were to bound (an Intel core
 * with a 2,048-entry STLB). Each window still far exceeds what the rows of one burst touch, so
 * the cache does not help: the buffer as a whole is the probe's working set. */
#define WINDOW ((size_t)1 << 30)

/* Random rows of rb bytes, every line of each prefetched `dist` rows ahead (addresses
 * generated as far ahead, in a ring), one word of each line read: rows/s until `seconds`
 * pass. */
static inline __attribute__((always_inline)) uint64_t
random_rows(const job *j, int task, const size_t rb, double t0, uint64_t *sink, double *t) {
    const size_t all = j->bytes / rb, nrows = SPINE_MIN(all, WINDOW / rb), nwin = all / nrows;
    size_t win = 0;
    const uint8_t *wbase = j->buf;
    size_t lines = (rb + 63) / 64 + 1;
    unsigned dist = (unsigned)SPINE_MAX(2, SPINE_MIN(RING, j->inflight / lines));
    unsigned mask = 1;
    while (mask < dist) mask <<= 1; /* a power of two ring of at least dist */
    mask -= 1;
    uint64_t s = 0x9e3779b97f4a7c15ull * (uint64_t)(task + 1), count = 0, acc = 0;
    const uint8_t *ring[RING];
    for (unsigned k = 0; k <= mask; k++) {
        ring[k] = wbase + below(&s, nrows) * rb;
        for (size_t o = 0; o < rb; o += 64) pf_line(ring[k] + o, j->l2);
        if (sls_asks_last_byte((uintptr_t)ring[k], rb)) pf_line(ring[k] + rb - 1, j->l2);
    }
    do {
        for (unsigned it = 0; it < 4096; it++) {
            unsigned k = it & mask;
            const uint8_t *row = ring[k];
            uint64_t v = 0;
            for (size_t o = 0; o + 8 <= rb; o += 64) { /* rows need not be aligned */
                uint64_t x;
                memcpy(&x, row + o, 8);
                v += x;
            }
            v += row[rb - 1];
            acc += v;
            const uint8_t *next = wbase + below(&s, nrows) * rb;
            for (size_t o = 0; o < rb; o += 64) pf_line(next + o, j->l2);
            if (sls_asks_last_byte((uintptr_t)next, rb)) pf_line(next + rb - 1, j->l2);
            ring[k] = next;
        }
        count += 4096;
        win = win + 1 == nwin ? 0 : win + 1;
        wbase = j->buf + win * nrows * rb;
        *t = spine_now();
    } while (*t - t0 < j->seconds);
    *sink += acc;
    return count;
}

static void run(void *arg, int task, int thread) {
    (void)thread;
    job *j = arg;
    const size_t slice = j->bytes / (size_t)j->threads & ~(size_t)63;
    const uint8_t *base = j->buf + (size_t)task * slice;
    uint64_t sink = 0;
    double t0 = spine_now(), t;
    uint64_t count = 0;
#if defined(__x86_64__) && defined(SPINE_HAVE_AVX2)
    if (j->mode == 0 && sls_best_isa() >= SLS_ISA_AVX2) {
        /* sequential, AVX2 (membw_avx2.c): 4 streams per 8 MiB block, as kernels read weights */
        const size_t n = slice / 256 * 256;
        do {
            sink += membw_seq_avx2(base, n, j->ahead);
            count += n;
            t = spine_now();
        } while (t - t0 < j->seconds);
    } else
#endif
        if (j->mode == 0) { /* sequential, portable: sum 64-bit words of the slice, repeatedly */
        do {
            const uint64_t *p = (const uint64_t *)(const void *)base;
            uint64_t a = 0, b = 0, c = 0, d = 0;
            for (size_t i = 0; i + 4 <= slice / 8; i += 4) {
                a += p[i];
                b += p[i + 1];
                c += p[i + 2];
                d += p[i + 3];
            }
            sink += a ^ b ^ c ^ d;
            count += slice;
            t = spine_now();
        } while (t - t0 < j->seconds);
    } else {
        const size_t rb = j->row_bytes;
        /* the common row sizes with rb a constant (dim 64 in f32, f16, int8 and int4; one
         * line; f32 dim 128), so the per-row loops unroll as they do in the kernels */
        count = rb == 64    ? random_rows(j, task, 64, t0, &sink, &t)
                : rb == 512 ? random_rows(j, task, 512, t0, &sink, &t)
                : rb == 256 ? random_rows(j, task, 256, t0, &sink, &t)
                : rb == 128 ? random_rows(j, task, 128, t0, &sink, &t)
                : rb == 72  ? random_rows(j, task, 72, t0, &sink, &t)
                : rb == 36  ? random_rows(j, task, 36, t0, &sink, &t)
                            : random_rows(j, task, rb, t0, &sink, &t);
    }
    j->result[task] = (double)count / (t - t0) + (sink == 42 ? 1e-9 : 0);
}

static spine_status check(spine_pool *pool, int threads, size_t bytes, spine_error *err) {
    if (threads < 1 || threads > 256 || threads > spine_pool_size(pool) ||
        bytes < ((size_t)64 << 20))
        return spine_fail(err, SPINE_ERR_INVALID,
                          "membw: %d threads (pool of %d), buffer of %zu bytes (at least 64 MiB)",
                          threads, spine_pool_size(pool), bytes);
    return SPINE_OK;
}

spine_status membw_seq(spine_pool *pool, int threads, const void *buf, size_t bytes, double seconds,
                       double *out, spine_error *err) {
    spine_status st = check(pool, threads, bytes, err);
    if (st) return st;
    /* without and with a software prefetch 2 KiB ahead in each stream; the better one counts */
    *out = 0;
    for (int v = 0; v < 2; v++) {
        job j = {.buf = buf,
                 .bytes = bytes,
                 .threads = threads,
                 .seconds = seconds / 2,
                 .mode = 0,
                 .ahead = v ? 2048 : 0};
        spine_pool_run(pool, threads, run, &j);
        double sum = 0;
        for (int i = 0; i < threads; i++) sum += j.result[i];
        if (getenv("SPINE_MEMBW_DEBUG"))
            fprintf(stderr, "membw: sequential, prefetch %zu B ahead: %.2f GB/s\n", j.ahead,
                    sum / 1e9);
        if (sum > *out) *out = sum;
    }
    return SPINE_OK;
}

spine_status membw_random(spine_pool *pool, int threads, const void *buf, size_t bytes,
                          size_t row_bytes, double seconds, double *out, spine_error *err) {
    spine_status st = check(pool, threads, bytes, err);
    if (st) return st;
    if (row_bytes == 0 || row_bytes > 65536)
        return spine_fail(err, SPINE_ERR_INVALID, "membw: row of %zu bytes", row_bytes);
    const int nd = (int)SPINE_ARRAY_LEN(in_flight) * 2;
    *out = 0;
    for (int d = 0; d < nd; d++) {
        job j = {.buf = buf,
                 .bytes = bytes,
                 .threads = threads,
                 .seconds = seconds / nd,
                 .mode = 1,
                 .row_bytes = row_bytes,
                 .inflight = in_flight[d / 2],
                 .l2 = d % 2};
        spine_pool_run(pool, threads, run, &j);
        double sum = 0;
        for (int i = 0; i < threads; i++) sum += j.result[i];
        if (getenv("SPINE_MEMBW_DEBUG"))
            fprintf(stderr, "membw: rows of %zu B, %u lines in flight into L%d: %.1f M/s\n",
                    row_bytes, in_flight[d / 2], d % 2 ? 2 : 1, sum / 1e6);
        if (sum > *out) *out = sum;
    }
    return SPINE_OK;
}
