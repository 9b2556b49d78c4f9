/* moe_tokens.c: the token-file parser for `spine moe run --tokens` (format in moe.h and
 * docs/MOE.md). Bounded: at most 2^20 sequences of at most 2^20 tokens, every number checked. */
#include "moe.h"

#include <stdlib.h>

#define MAX_SEQS (1 << 20)
#define MAX_LEN (1 << 20)

void moe_tokens_free(moe_tokens *t) {
    free(t->ids);
    memset(t, 0, sizeof *t);
}

spine_status moe_tokens_parse(const char *text, size_t n, int max_seq, moe_tokens *out,
                              spine_error *err) {
    memset(out, 0, sizeof *out);
    size_t cap = 0, count = 0;
    int64_t *ids = NULL;
    int line = 0, nseq = 0, len = -1;
    size_t i = 0;
    spine_status st = SPINE_OK;
    while (i < n && !st && (max_seq <= 0 || nseq < max_seq)) {
        line++;
        size_t ls = i;
        while (i < n && text[i] != '\n') i++;
        size_t le = i;
        if (i < n) i++;
        if (le > ls && text[le - 1] == '\r') le--;
        size_t p = ls;
        while (p < le && (text[p] == ' ' || text[p] == '\t')) p++;
        if (p == le || text[p] == '#') continue;
        int this_len = 0;
        while (p < le && !st) {
            char ch = text[p];
            if (ch == ' ' || ch == '\t' || ch == ',') {
                p++;
                continue;
            }
            size_t col = p - ls + 1;
            bool neg = false;
            if (ch == '-') neg = true, p++;
            if (p >= le || text[p] < '0' || text[p] > '9') {
                st = spine_fail(err, SPINE_ERR_FORMAT, "line %d, column %zu: expected a token id",
                                line, col);
                break;
            }
            uint64_t v = 0;
            while (p < le && text[p] >= '0' && text[p] <= '9') {
                if (v > (uint64_t)INT64_MAX / 10) {
                    st = spine_fail(err, SPINE_ERR_RANGE, "line %d, column %zu: number too large",
                                    line, col);
                    break;
                }
                v = v * 10 + (uint64_t)(text[p++] - '0');
            }
            if (st) break;
            if (v > (uint64_t)INT64_MAX) {
                st = spine_fail(err, SPINE_ERR_RANGE, "line %d, column %zu: number too large", line,
                                col);
                break;
            }
            if (p < le && text[p] != ' ' && text[p] != '\t' && text[p] != ',') {
                st = spine_fail(err, SPINE_ERR_FORMAT,
                                "line %d, column %zu: unexpected character in a token id", line,
                                p - ls + 1);
                break;
            }
            if (this_len >= MAX_LEN) {
                st =
                    spine_fail(err, SPINE_ERR_LIMIT, "line %d: more than %d tokens", line, MAX_LEN);
                break;
            }
            if (count == cap) {
                size_t nc = cap ? cap * 2 : 1024;
                int64_t *ni = realloc(ids, nc * sizeof *ni);
                if (!ni) {
                    st = spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
                    break;
                }
                ids = ni;
                cap = nc;
            }
            ids[count++] = neg ? -(int64_t)v : (int64_t)v;
            this_len++;
        }
        if (st) break;
        if (this_len == 0) continue; /* a line of separators only */
        if (len >= 0 && this_len != len) {
            st = spine_fail(err, SPINE_ERR_FORMAT,
                            "line %d: %d tokens, but earlier sequences have %d (all sequences of "
                            "a batch must have the same length)",
                            line, this_len, len);
            break;
        }
        len = this_len;
        if (++nseq > MAX_SEQS)
            st = spine_fail(err, SPINE_ERR_LIMIT, "more than %d sequences", MAX_SEQS);
    }
    if (!st && nseq == 0) st = spine_fail(err, SPINE_ERR_FORMAT, "no token sequences");
    if (st) {
        free(ids);
        return st;
    }
    out->ids = ids;
    out->n_seq = nseq;
    out->len = len;
    return SPINE_OK;
}
