/* json.c: the strict JSON parser and string escaping (see json.h). */
#include "json.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct parser {
    json_doc *d;
    const unsigned char *s;
    size_t len, pos;
    spine_error *err;
    spine_status st;
    uint32_t max_nodes;
} parser;

static spine_status perr(parser *p, const char *what) {
    p->st = spine_fail(p->err, SPINE_ERR_FORMAT, "json: %s at byte %zu", what, p->pos);
    return p->st;
}

static void skip_ws(parser *p) {
    while (p->pos < p->len) {
        unsigned char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static int64_t new_node(parser *p, json_type t) {
    json_doc *d = p->d;
    if (d->n >= p->max_nodes) {
        p->st = spine_fail(p->err, SPINE_ERR_LIMIT, "json: more than %u values", p->max_nodes);
        return -1;
    }
    if (d->n == d->cap) {
        if (d->cap >= UINT32_MAX / 2) {
            p->st = spine_fail(p->err, SPINE_ERR_LIMIT, "json: too many values");
            return -1;
        }
        uint32_t cap = d->cap ? d->cap * 2 : 64;
        json_node *nn = realloc(d->nodes, (size_t)cap * sizeof *nn);
        if (!nn) {
            p->st = spine_fail(p->err, SPINE_ERR_NOMEM, "json: out of memory");
            return -1;
        }
        d->nodes = nn;
        d->cap = cap;
    }
    json_node *n = &d->nodes[d->n];
    memset(n, 0, sizeof *n);
    n->type = t;
    return d->n++;
}

static int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool read_hex4(parser *p, uint32_t *out) {
    if (p->len - p->pos < 4) return false;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p->s[p->pos + i]);
        if (h < 0) return false;
        v = (v << 4) | (uint32_t)h;
    }
    p->pos += 4;
    *out = v;
    return true;
}

static void put_utf8(char *o, size_t *k, uint32_t cp) {
    if (cp < 0x80) {
        o[(*k)++] = (char)cp;
    } else if (cp < 0x800) {
        o[(*k)++] = (char)(0xc0 | (cp >> 6));
        o[(*k)++] = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        o[(*k)++] = (char)(0xe0 | (cp >> 12));
        o[(*k)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[(*k)++] = (char)(0x80 | (cp & 0x3f));
    } else {
        o[(*k)++] = (char)(0xf0 | (cp >> 18));
        o[(*k)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
        o[(*k)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[(*k)++] = (char)(0x80 | (cp & 0x3f));
    }
}

/* Length of a valid UTF-8 sequence starting at s[0] (multi-byte lead), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t avail) {
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (avail < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

static spine_status parse_string(parser *p, uint32_t *off, uint32_t *outlen) {
    /* p->pos is at the opening quote; decoded text goes to strs (never longer than source) */
    json_doc *d = p->d;
    p->pos++;
    size_t start = d->strs_len;
    char *o = d->strs;
    size_t k = start;
    for (;;) {
        if (p->pos >= p->len) return perr(p, "unterminated string");
        unsigned char c = p->s[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c < 0x20) return perr(p, "control character in string");
        if (c == '\\') {
            if (p->pos + 1 >= p->len) return perr(p, "unterminated escape");
            unsigned char e = p->s[p->pos + 1];
            p->pos += 2;
            switch (e) {
            case '"':
                o[k++] = '"';
                break;
            case '\\':
                o[k++] = '\\';
                break;
            case '/':
                o[k++] = '/';
                break;
            case 'b':
                o[k++] = '\b';
                break;
            case 'f':
                o[k++] = '\f';
                break;
            case 'n':
                o[k++] = '\n';
                break;
            case 'r':
                o[k++] = '\r';
                break;
            case 't':
                o[k++] = '\t';
                break;
            case 'u': {
                uint32_t cp;
                if (!read_hex4(p, &cp)) return perr(p, "bad \\u escape");
                if (cp >= 0xdc00 && cp <= 0xdfff) return perr(p, "lone low surrogate");
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    uint32_t lo;
                    if (p->len - p->pos < 6 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
                        return perr(p, "lone high surrogate");
                    p->pos += 2;
                    if (!read_hex4(p, &lo) || lo < 0xdc00 || lo > 0xdfff)
                        return perr(p, "bad surrogate pair");
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                }
                if (cp == 0) return perr(p, "NUL character in string");
                put_utf8(o, &k, cp);
                break;
            }
            default:
                return perr(p, "bad escape");
            }
            continue;
        }
        if (c < 0x80) {
            o[k++] = (char)c;
            p->pos++;
        } else {
            size_t n = utf8_seq(p->s + p->pos, p->len - p->pos);
            if (!n) return perr(p, "invalid UTF-8");
            memcpy(o + k, p->s + p->pos, n);
            k += n;
            p->pos += n;
        }
    }
    o[k++] = 0;
    d->strs_len = k;
    if (k - 1 - start > UINT32_MAX) return perr(p, "string too long");
    *off = (uint32_t)start;
    *outlen = (uint32_t)(k - 1 - start);
    return SPINE_OK;
}

static spine_status parse_number(parser *p, json_node *n) {
    size_t start = p->pos;
    const unsigned char *s = p->s;
    if (p->pos < p->len && s[p->pos] == '-') p->pos++;
    if (p->pos >= p->len) return perr(p, "bad number");
    if (s[p->pos] == '0') {
        p->pos++;
    } else if (s[p->pos] >= '1' && s[p->pos] <= '9') {
        while (p->pos < p->len && s[p->pos] >= '0' && s[p->pos] <= '9') p->pos++;
    } else {
        return perr(p, "bad number");
    }
    if (p->pos < p->len && s[p->pos] == '.') {
        p->pos++;
        if (p->pos >= p->len || s[p->pos] < '0' || s[p->pos] > '9') return perr(p, "bad fraction");
        while (p->pos < p->len && s[p->pos] >= '0' && s[p->pos] <= '9') p->pos++;
    }
    if (p->pos < p->len && (s[p->pos] == 'e' || s[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < p->len && (s[p->pos] == '+' || s[p->pos] == '-')) p->pos++;
        if (p->pos >= p->len || s[p->pos] < '0' || s[p->pos] > '9') return perr(p, "bad exponent");
        while (p->pos < p->len && s[p->pos] >= '0' && s[p->pos] <= '9') p->pos++;
    }
    size_t len = p->pos - start;
    char tmp[128];
    if (len >= sizeof tmp) return perr(p, "number too long");
    memcpy(tmp, s + start, len);
    tmp[len] = 0;
    n->num = strtod(tmp, NULL);
    n->off = (uint32_t)start;
    n->len = (uint32_t)len;
    return SPINE_OK;
}

static bool match_lit(parser *p, const char *lit) {
    size_t n = strlen(lit);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, lit, n) != 0) return false;
    p->pos += n;
    return true;
}

static spine_status parse_value(parser *p, int depth, int64_t *out_idx);

static spine_status parse_container(parser *p, int depth, int64_t idx, bool is_obj) {
    p->pos++; /* [ or { */
    uint32_t count = 0;
    int64_t prev = 0;
    skip_ws(p);
    char close = is_obj ? '}' : ']';
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        return SPINE_OK;
    }
    for (;;) {
        skip_ws(p);
        int64_t child;
        if (is_obj) {
            if (p->pos >= p->len || p->s[p->pos] != '"') return perr(p, "expected object key");
            int64_t k = new_node(p, JSON_STRING);
            if (k < 0) return p->st;
            uint32_t off, len;
            if (parse_string(p, &off, &len)) return p->st;
            p->d->nodes[k].off = off;
            p->d->nodes[k].len = len;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':') return perr(p, "expected ':'");
            p->pos++;
            int64_t v;
            if (parse_value(p, depth + 1, &v)) return p->st;
            p->d->nodes[k].next = (uint32_t)v;
            child = k;
            if (prev)
                p->d->nodes[prev].next = (uint32_t)k;
            else
                p->d->nodes[idx].first = (uint32_t)k;
            prev = v;
        } else {
            if (parse_value(p, depth + 1, &child)) return p->st;
            if (prev)
                p->d->nodes[prev].next = (uint32_t)child;
            else
                p->d->nodes[idx].first = (uint32_t)child;
            prev = child;
        }
        count++;
        skip_ws(p);
        if (p->pos >= p->len) return perr(p, "unterminated container");
        if (p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->s[p->pos] == close) {
            p->pos++;
            break;
        }
        return perr(p, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    p->d->nodes[idx].count = count;
    return SPINE_OK;
}

static spine_status parse_value(parser *p, int depth, int64_t *out_idx) {
    if (depth > JSON_MAX_DEPTH) return perr(p, "nesting too deep");
    skip_ws(p);
    if (p->pos >= p->len) return perr(p, "unexpected end of input");
    unsigned char c = p->s[p->pos];
    int64_t idx;
    switch (c) {
    case '{':
    case '[':
        idx = new_node(p, c == '{' ? JSON_OBJECT : JSON_ARRAY);
        if (idx < 0) return p->st;
        if (parse_container(p, depth, idx, c == '{')) return p->st;
        break;
    case '"': {
        idx = new_node(p, JSON_STRING);
        if (idx < 0) return p->st;
        uint32_t off, len;
        if (parse_string(p, &off, &len)) return p->st;
        p->d->nodes[idx].off = off;
        p->d->nodes[idx].len = len;
        break;
    }
    case 't':
    case 'f':
    case 'n': {
        json_type t = c == 't' ? JSON_TRUE : c == 'f' ? JSON_FALSE : JSON_NULL;
        if (!match_lit(p, c == 't' ? "true" : c == 'f' ? "false" : "null"))
            return perr(p, "bad literal");
        idx = new_node(p, t);
        if (idx < 0) return p->st;
        break;
    }
    default:
        if (c == '-' || (c >= '0' && c <= '9')) {
            idx = new_node(p, JSON_NUMBER);
            if (idx < 0) return p->st;
            if (parse_number(p, &p->d->nodes[idx])) return p->st;
            break;
        }
        return perr(p, "unexpected character");
    }
    *out_idx = idx;
    return SPINE_OK;
}

spine_status json_parse(json_doc *doc, const char *text, size_t len, spine_error *err) {
    return json_parse_limited(doc, text, len, UINT32_MAX, err);
}

spine_status json_parse_limited(json_doc *doc, const char *text, size_t len, uint32_t max_nodes,
                                spine_error *err) {
    memset(doc, 0, sizeof *doc);
    if (len > JSON_MAX_INPUT)
        return spine_fail(err, SPINE_ERR_LIMIT, "json: document of %zu bytes is too large", len);
    doc->src = text;
    doc->strs = malloc(len + 1);
    if (!doc->strs) return spine_fail(err, SPINE_ERR_NOMEM, "json: out of memory");
    parser p = {
        .d = doc, .s = (const unsigned char *)text, .len = len, .err = err, .max_nodes = max_nodes};
    int64_t root;
    if (parse_value(&p, 0, &root) == SPINE_OK) {
        skip_ws(&p);
        if (p.pos != p.len) perr(&p, "trailing characters");
    }
    if (p.st != SPINE_OK) {
        json_free(doc);
        return p.st;
    }
    return SPINE_OK;
}

void json_free(json_doc *doc) {
    free(doc->nodes);
    free(doc->strs);
    memset(doc, 0, sizeof *doc);
}

const json_node *json_child(const json_doc *d, const json_node *n) {
    if ((n->type != JSON_ARRAY && n->type != JSON_OBJECT) || !n->first) return NULL;
    return &d->nodes[n->first];
}

const json_node *json_next(const json_doc *d, const json_node *n) {
    return n->next ? &d->nodes[n->next] : NULL;
}

const json_node *json_obj_get(const json_doc *d, const json_node *obj, const char *key) {
    if (!obj || obj->type != JSON_OBJECT) return NULL;
    size_t klen = strlen(key);
    for (const json_node *k = json_child(d, obj); k; k = json_next(d, json_next(d, k))) {
        if (k->len == klen && memcmp(json_str(d, k), key, klen) == 0) return json_next(d, k);
    }
    return NULL;
}

static bool int_text(const json_doc *d, const json_node *n, bool *neg, uint64_t *mag) {
    if (n->type != JSON_NUMBER) return false;
    const char *s = d->src + n->off;
    size_t len = n->len, i = 0;
    *neg = false;
    if (len && s[0] == '-') {
        *neg = true;
        i = 1;
    }
    if (i >= len) return false;
    uint64_t v = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return false; /* fraction or exponent */
        uint64_t dgt = (uint64_t)(s[i] - '0');
        if (v > UINT64_MAX / 10 || (v == UINT64_MAX / 10 && dgt > UINT64_MAX % 10)) return false;
        v = v * 10 + dgt;
    }
    *mag = v;
    return true;
}

bool json_get_u64(const json_doc *d, const json_node *n, uint64_t *out) {
    bool neg;
    uint64_t m;
    if (!int_text(d, n, &neg, &m) || (neg && m != 0)) return false;
    *out = m;
    return true;
}

bool json_get_i64(const json_doc *d, const json_node *n, int64_t *out) {
    bool neg;
    uint64_t m;
    if (!int_text(d, n, &neg, &m)) return false;
    if (neg) {
        if (m > (uint64_t)INT64_MAX + 1) return false;
        *out = m == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)m;
    } else {
        if (m > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)m;
    }
    return true;
}

void json_write_string(spine_buf *b, const char *s, size_t len) {
    spine_buf_append(b, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            spine_buf_append(b, e, 2);
        } else if (c < 0x20) {
            spine_buf_printf(b, "\\u%04x", c);
        } else {
            spine_buf_append(b, &s[i], 1);
        }
    }
    spine_buf_append(b, "\"", 1);
}

spine_status json_get_int_in(const json_doc *d, const json_node *v, const char *key, int64_t lo,
                             int64_t hi, int64_t *out, spine_error *err) {
    int64_t x;
    if (!json_get_i64(d, v, &x))
        return spine_fail(err, SPINE_ERR_FORMAT, "\"%s\" must be an integer", key);
    if (x < lo || x > hi)
        return spine_fail(err, SPINE_ERR_LIMIT, "\"%s\" = %lld is outside [%lld, %lld]", key,
                          (long long)x, (long long)lo, (long long)hi);
    *out = x;
    return SPINE_OK;
}
