/* error.c: status names, error construction, version string. */
#include "base.h"

#include <stdio.h>

const char *spine_version(void) {
    return "0.1.0";
}

const char *spine_status_name(spine_status s) {
    switch (s) {
    case SPINE_OK:
        return "ok";
    case SPINE_ERR_INVALID:
        return "invalid argument";
    case SPINE_ERR_NOMEM:
        return "out of memory";
    case SPINE_ERR_IO:
        return "i/o error";
    case SPINE_ERR_FORMAT:
        return "format error";
    case SPINE_ERR_RANGE:
        return "index out of range";
    case SPINE_ERR_UNSUPPORTED:
        return "unsupported";
    case SPINE_ERR_LIMIT:
        return "limit exceeded";
    }
    return "unknown status";
}

spine_status spine_fail(spine_error *err, spine_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void spine_error_prefix(spine_error *err, const char *fmt, ...) {
    if (!err) return;
    char pre[256], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t np = strnlen(pre, sizeof pre), no = strnlen(old, sizeof old - 1);
    if (np > sizeof err->msg - 1) np = sizeof err->msg - 1;
    if (no > sizeof err->msg - 1 - np) no = sizeof err->msg - 1 - np; /* truncate the tail */
    memcpy(err->msg, pre, np);
    memcpy(err->msg + np, old, no);
    err->msg[np + no] = 0;
}
