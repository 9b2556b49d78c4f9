/* criteo.c: the bounded line reader and the Criteo TSV line parser (see io.h). */
#include "io.h"

#include <math.h>
#include <stdlib.h>

spine_status line_reader_init(line_reader *r, FILE *f, spine_error *err) {
    memset(r, 0, sizeof *r);
    r->f = f;
    r->buf = malloc(LINE_MAX_BYTES + 1);
    if (!r->buf) return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    return SPINE_OK;
}

void line_reader_free(line_reader *r) {
    free(r->buf);
    r->buf = NULL;
}

/* Move the unread part to the front and read more; returns bytes added, -1 on error. */
static long fill(line_reader *r) {
    if (r->start) {
        memmove(r->buf, r->buf + r->start, r->len - r->start);
        r->len -= r->start;
        r->start = 0;
    }
    if (r->eof || r->len >= LINE_MAX_BYTES + 1) return 0;
    size_t got = fread(r->buf + r->len, 1, LINE_MAX_BYTES + 1 - r->len, r->f);
    if (got == 0) {
        if (ferror(r->f)) return -1;
        r->eof = true;
    }
    r->len += got;
    return (long)got;
}

int line_reader_next(line_reader *r, const char **line, size_t *len, bool *too_long) {
    *too_long = false;
    for (;;) {
        char *s = r->buf + r->start;
        size_t avail = r->len - r->start;
        char *nl = memchr(s, '\n', avail);
        if (nl || (r->eof && avail > 0)) {
            size_t n = nl ? (size_t)(nl - s) : avail;
            r->start += nl ? n + 1 : n;
            r->lineno++;
            if (n > 0 && s[n - 1] == '\r') n--;
            *line = s;
            *len = n;
            return 1;
        }
        if (r->eof) return 0;
        if (avail > LINE_MAX_BYTES) { /* a line longer than we hold: skip it */
            r->lineno++;
            *too_long = true;
            for (;;) {
                r->start = r->len = 0;
                long got = fill(r);
                if (got < 0) return -1;
                char *p = memchr(r->buf, '\n', r->len);
                if (p) {
                    r->start = (size_t)(p - r->buf) + 1;
                    break;
                }
                if (r->eof) break;
            }
            *line = NULL;
            *len = 0;
            return 1;
        }
        if (fill(r) < 0) return -1;
    }
}

static int cerr(criteo_error *e, size_t col, int field, const char *msg) {
    e->column = (int)col + 1;
    e->field = field;
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    return -1;
}

int criteo_parse_line(const char *line, size_t len, int num_dense, int num_tables,
                      const int64_t *rows, float *dense, int64_t *idx, criteo_error *e) {
    /* count fields to know whether a label leads */
    size_t nf = 1;
    for (size_t i = 0; i < len; i++) nf += line[i] == '\t';
    size_t want = (size_t)num_dense + (size_t)num_tables;
    if (len == 0) return cerr(e, 0, 0, "empty line");
    if (nf != want && nf != want + 1) {
        char m[160];
        snprintf(m, sizeof m, "%zu fields, expected %zu (or %zu with a label)", nf, want, want + 1);
        return cerr(e, len, (int)nf, m);
    }
    int field = 0;
    size_t pos = 0;
    bool label = nf == want + 1;
    for (size_t f = 0; f < nf; f++) {
        size_t end = pos;
        while (end < len && line[end] != '\t') end++;
        field = (int)f + 1;
        const char *s = line + pos;
        size_t n = end - pos;
        if (label && f == 0) {
            for (size_t i = 0; i < n; i++)
                if (!(s[i] >= '0' && s[i] <= '9') && !(i == 0 && s[i] == '-' && n > 1))
                    return cerr(e, pos + i, field, "label must be an integer");
        } else if (f < (label ? 1u : 0u) + (size_t)num_dense) {
            size_t k = f - (label ? 1 : 0);
            double v = 0;
            if (n > 0) {
                bool neg = s[0] == '-';
                size_t i = neg ? 1 : 0;
                if (i == n) return cerr(e, pos, field, "dense value must be an integer");
                uint64_t x = 0;
                for (; i < n; i++) {
                    if (s[i] < '0' || s[i] > '9')
                        return cerr(e, pos + i, field, "dense value must be an integer");
                    if (x > (UINT64_MAX - 9) / 10)
                        return cerr(e, pos + i, field, "dense value too large");
                    x = x * 10 + (uint64_t)(s[i] - '0');
                }
                v = neg ? 0.0 : (double)x;
            }
            dense[k] = (float)log1p(v);
        } else {
            size_t t = f - (label ? 1 : 0) - (size_t)num_dense;
            if (n > 16) return cerr(e, pos, field, "categorical value longer than 16 hex digits");
            uint64_t x = 0;
            for (size_t i = 0; i < n; i++) {
                char c = s[i];
                int h = (c >= '0' && c <= '9')   ? c - '0'
                        : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                        : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                                 : -1;
                if (h < 0) return cerr(e, pos + i, field, "categorical value must be hexadecimal");
                x = (x << 4) | (uint64_t)h;
            }
            idx[t] = (int64_t)(x % (uint64_t)rows[t]);
        }
        pos = end + 1;
    }
    return 0;
}
