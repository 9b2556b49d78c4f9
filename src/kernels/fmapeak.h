/* fmapeak.h: this machine's FMA peak in FLOP/s (see fmapeak.c). */
#ifndef SPINE_FMAPEAK_H
#define SPINE_FMAPEAK_H

#include "../base/base.h"

/* Best FLOP/s over repeated rounds of `seconds` in total, `threads` tasks on the pool (which
 * must have at least that many threads for them to run in parallel). */
spine_status fmapeak_measure(spine_pool *pool, int threads, double seconds, double *flops,
                             spine_error *err);

#endif
