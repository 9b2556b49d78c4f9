/* base.h: internal helpers shared by every layer: error reporting, checked arithmetic, aligned
 * allocation, a growable byte buffer, half-precision conversion, timing and a seeded RNG.
 * Nothing here knows about models or stores. */
#ifndef SPINE_BASE_H
#define SPINE_BASE_H

#include "spine/spine.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define SPINE_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define SPINE_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SPINE_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Fill *err (when not NULL) and return code, so that a failure is one line:
 *     return spine_fail(err, SPINE_ERR_FORMAT, "tensor %s: bad shape", name); */
spine_status spine_fail(spine_error *err, spine_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefix an existing message with context ("config.json: " + msg). */
void spine_error_prefix(spine_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Checked arithmetic: return false on overflow. */
static inline bool spine_mul_size(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool spine_add_size(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

/* 64-byte aligned allocation (free with spine_free_aligned); NULL on failure or size 0. */
void *spine_alloc_aligned(size_t bytes);
void spine_free_aligned(void *p);

/* Anonymous memory on 2 MiB pages where the kernel gives them (transparent huge pages via
 * madvise; 4 KiB pages otherwise). 2 MiB aligned. Free with spine_free_huge(p, bytes). */
void *spine_alloc_huge(size_t bytes);
void spine_free_huge(void *p, size_t bytes);
/* Bytes of this process's memory on transparent huge pages (AnonHugePages), or -1. */
int64_t spine_huge_bytes(void);
/* MemAvailable in bytes, or -1. */
int64_t spine_mem_available(void);
/* The last-level cache as the CPU reports it (sysconf, then sysfs; 32 MiB when neither says):
 * what "far larger than the last-level cache" is measured against. */
int64_t spine_llc_bytes(void);

/* A growable byte buffer that always stays NUL-terminated. On allocation failure it sets
 * `failed` and further appends do nothing: check once at the end. */
typedef struct spine_buf {
    char *data;
    size_t len, cap;
    bool failed;
} spine_buf;
void spine_buf_append(spine_buf *b, const void *p, size_t n);
void spine_buf_puts(spine_buf *b, const char *s);
void spine_buf_printf(spine_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void spine_buf_free(spine_buf *b);

/* IEEE half and bfloat16. */
float spine_f16_to_f32(uint16_t h);
uint16_t spine_f32_to_f16(float f); /* round to nearest even */
float spine_bf16_to_f32(uint16_t h);
uint16_t spine_f32_to_bf16(float f); /* round to nearest even */

/* Sort doubles ascending, and the p-th percentile (0..100) of sorted values, interpolated
 * between neighbours (0 when n is 0). For latency reports. */
void spine_sort_doubles(double *v, size_t n);
double spine_percentile(const double *sorted, size_t n, double p);

/* Monotonic time. */
double spine_now(void); /* seconds */
uint64_t spine_now_ns(void);

/* A small, fast, seedable generator (xoshiro256**), seeded through splitmix64. */
typedef struct spine_rng {
    uint64_t s[4];
} spine_rng;
void spine_rng_seed(spine_rng *r, uint64_t seed);
uint64_t spine_rng_next(spine_rng *r);
uint64_t spine_rng_below(spine_rng *r, uint64_t n); /* uniform in [0, n), n > 0 */
float spine_rng_uniform(spine_rng *r);              /* [0, 1) */
float spine_rng_normal(spine_rng *r);               /* standard normal */
uint64_t spine_hash64(uint64_t x);                  /* splitmix64 finaliser */

/* Zipf-distributed ranks in [0, n): P(k) proportional to (k+1)^-alpha, alpha > 0, by
 * rejection-inversion (Hormann and Derflinger), O(1) per draw and no tables. */
typedef struct spine_zipf {
    uint64_t n;
    double alpha, hx1, hn, s;
} spine_zipf;
void spine_zipf_init(spine_zipf *z, uint64_t n, double alpha);
uint64_t spine_zipf_draw(const spine_zipf *z, spine_rng *r);

/* Read a whole (small) file; *out is NUL-terminated, free() it. Refuses files over max_bytes. */
spine_status spine_read_file(const char *path, size_t max_bytes, char **out, size_t *len,
                             spine_error *err);
/* mkdir -p */
spine_status spine_mkdir_p(const char *path, spine_error *err);
/* Write a file atomically: write path.tmp, then rename over path. */
spine_status spine_write_file(const char *path, const void *data, size_t len, spine_error *err);

#endif
