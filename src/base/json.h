/* json.h: a strict, bounded JSON parser (RFC 8259) into a flat node array, and a writer.
 *
 * The parser trusts nothing: it validates UTF-8, rejects control characters, duplicate keys
 * are allowed by the grammar but reported by json_obj_get_unique, nesting is capped, numbers
 * keep their text so integers up to 64 bits are read exactly. Input need not be
 * NUL-terminated. Nodes are stored in document order; an object's members are key node then
 * value node. */
#ifndef SPINE_JSON_H
#define SPINE_JSON_H

#include "base.h"

typedef enum json_type {
    JSON_NULL,
    JSON_FALSE,
    JSON_TRUE,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT,
} json_type;

typedef struct json_node {
    json_type type;
    uint32_t count; /* array: elements; object: members */
    uint32_t next;  /* index of the next sibling (0: none) */
    uint32_t first; /* array/object: index of the first child (0: none) */
    uint32_t off;   /* number/string: offset of text (number: in input; string: in strs) */
    uint32_t len;   /* byte length of that text */
    double num;
} json_node;

typedef struct json_doc {
    json_node *nodes;
    uint32_t n, cap;
    const char *src; /* the input, borrowed */
    char *strs;      /* decoded strings, each NUL-terminated */
    size_t strs_len;
} json_doc;

#define JSON_MAX_DEPTH 64
#define JSON_MAX_INPUT ((size_t)1 << 31)

/* Parse; node 0 is the root. On failure the message gives the byte offset. */
spine_status json_parse(json_doc *doc, const char *text, size_t len, spine_error *err);
/* The same, refusing documents of more than max_nodes values (each costs 40 bytes). */
spine_status json_parse_limited(json_doc *doc, const char *text, size_t len, uint32_t max_nodes,
                                spine_error *err);
void json_free(json_doc *doc);

static inline const json_node *json_root(const json_doc *d) {
    return &d->nodes[0];
}
static inline const char *json_str(const json_doc *d, const json_node *n) {
    return d->strs + n->off;
}
/* Member lookup; NULL when absent. */
const json_node *json_obj_get(const json_doc *d, const json_node *obj, const char *key);
/* Iterate: child = json_child(d, n); child; child = json_next(d, child) */
const json_node *json_child(const json_doc *d, const json_node *n);
const json_node *json_next(const json_doc *d, const json_node *n);
/* Exact integers from a number's text: fail on fractions, exponents or overflow. */
bool json_get_i64(const json_doc *d, const json_node *n, int64_t *out);
bool json_get_u64(const json_doc *d, const json_node *n, uint64_t *out);

/* An integer member of a config document, in [lo, hi]: SPINE_ERR_FORMAT ("\"key\" must be an
 * integer") or SPINE_ERR_LIMIT ("\"key\" = x is outside [lo, hi]") otherwise. */
spine_status json_get_int_in(const json_doc *d, const json_node *v, const char *key, int64_t lo,
                             int64_t hi, int64_t *out, spine_error *err);

/* Writer helpers on spine_buf. */
void json_write_string(spine_buf *b, const char *s, size_t len);

#endif
