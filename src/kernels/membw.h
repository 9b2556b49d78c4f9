/* membw.h: measuring this machine's memory limits: sequential read bandwidth and the rate of
 * independent random cache-line (or row) reads from a buffer far larger than the last-level
 * cache, with software prefetch keeping many misses in flight, on 2 MiB pages. */
#ifndef SPINE_MEMBW_H
#define SPINE_MEMBW_H

#include "../base/base.h"

/* Sequential read bandwidth in bytes/s with `threads` threads of the pool. */
spine_status membw_seq(spine_pool *pool, int threads, const void *buf, size_t bytes, double seconds,
                       double *out, spine_error *err);
/* Independent random reads of packed rows of row_bytes (every line of the row), rows/s.
 * row_bytes = 64 gives random cache lines per second. */
spine_status membw_random(spine_pool *pool, int threads, const void *buf, size_t bytes,
                          size_t row_bytes, double seconds, double *out, spine_error *err);
/* Average cache lines touched by a row of R bytes when rows are packed back to back. */
double membw_lines_per_row(size_t row_bytes);

#endif
