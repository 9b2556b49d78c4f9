/* safetensors.c: the safetensors reader (validating, mapping) and writer. */
#include "safetensors.h"

#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    [SPINE_DT_F32] = {"F32", 4}, [SPINE_DT_F16] = {"F16", 2}, [SPINE_DT_BF16] = {"BF16", 2},
    [SPINE_DT_I8] = {"I8", 1},   [SPINE_DT_U8] = {"U8", 1},   [SPINE_DT_I32] = {"I32", 4},
    [SPINE_DT_I64] = {"I64", 8},
};

const char *spine_dtype_name(spine_dtype t) {
    return (unsigned)t < SPINE_ARRAY_LEN(dtypes) ? dtypes[t].name : "?";
}
size_t spine_dtype_size(spine_dtype t) {
    return (unsigned)t < SPINE_ARRAY_LEN(dtypes) ? dtypes[t].size : 0;
}
int spine_dtype_parse(const char *s, spine_dtype *out) {
    for (size_t i = 0; i < SPINE_ARRAY_LEN(dtypes); i++) {
        if (strcmp(s, dtypes[i].name) == 0) {
            *out = (spine_dtype)i;
            return 0;
        }
    }
    return -1;
}

bool spine_tensor_numel(const spine_tensor *t, size_t *out) {
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0 || !spine_mul_size(n, (size_t)t->shape[i], &n)) return false;
    }
    *out = n;
    return true;
}

void st_free(spine_tensors *ts) {
    for (size_t i = 0; i < ts->n; i++) {
        free(ts->t[i].name);
        if (ts->t[i].owned_huge)
            spine_free_huge(ts->t[i].owned, ts->t[i].nbytes);
        else
            spine_free_aligned(ts->t[i].owned);
    }
    free(ts->t);
    if (ts->map) munmap(ts->map, ts->map_len);
    free(ts->metadata_json);
    memset(ts, 0, sizeof *ts);
}

const spine_tensor *st_find(const spine_tensors *ts, const char *name) {
    for (size_t i = 0; i < ts->n; i++)
        if (strcmp(ts->t[i].name, name) == 0) return &ts->t[i];
    return NULL;
}

static spine_tensor *push(spine_tensors *ts) {
    if (ts->n == ts->cap) {
        size_t cap = ts->cap ? ts->cap * 2 : 16;
        spine_tensor *nt = realloc(ts->t, cap * sizeof *nt);
        if (!nt) return NULL;
        ts->t = nt;
        ts->cap = cap;
    }
    spine_tensor *t = &ts->t[ts->n++];
    memset(t, 0, sizeof *t);
    return t;
}

spine_tensor *st_add_owned(spine_tensors *ts, const char *name, spine_dtype dt, int ndim,
                           const int64_t *shape, void *data, size_t nbytes) {
    if (ndim < 0 || ndim > SPINE_MAX_DIMS) return NULL;
    char *nm = strdup(name);
    if (!nm) return NULL;
    spine_tensor *t = push(ts);
    if (!t) {
        free(nm);
        return NULL;
    }
    t->name = nm;
    t->dtype = dt;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->data = data;
    t->owned = data;
    t->nbytes = nbytes;
    return t;
}

spine_tensor *st_add_owned_huge(spine_tensors *ts, const char *name, spine_dtype dt, int ndim,
                                const int64_t *shape, void *data, size_t nbytes) {
    spine_tensor *t = st_add_owned(ts, name, dt, ndim, shape, data, nbytes);
    if (t) t->owned_huge = true;
    return t;
}

spine_status st_move_to_huge(spine_tensors *ts, spine_tensor *t, spine_error *err) {
    return st_move_to_owned(ts, t, true, err);
}

spine_status st_move_to_owned(spine_tensors *ts, spine_tensor *t, bool huge, spine_error *err) {
    if (t->nbytes == 0 || t->owned_huge || (t->owned && !huge)) return SPINE_OK;
    void *p = huge ? spine_alloc_huge(t->nbytes) : spine_alloc_aligned(t->nbytes);
    if (!p)
        return spine_fail(err, SPINE_ERR_NOMEM, "tensor '%s': cannot allocate %zu bytes", t->name,
                          t->nbytes);
    memcpy(p, t->data, t->nbytes);
    uintptr_t old = (uintptr_t)t->data, map = (uintptr_t)ts->map;
    if (!t->owned && ts->map && old >= map && old + t->nbytes <= map + ts->map_len) {
        /* the file pages wholly inside the tensor (its neighbours may still read the rest) */
        const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
        uintptr_t a = (old + pg - 1) & ~(pg - 1), e = (old + t->nbytes) & ~(pg - 1);
        if (e > a) madvise((void *)a, e - a, MADV_DONTNEED); /* advice: harmless if refused */
    }
    spine_free_aligned(t->owned);
    t->data = p;
    t->owned = p;
    t->owned_huge = huge;
    return SPINE_OK;
}

typedef struct range {
    uint64_t begin, end;
    size_t idx;
} range;

static int cmp_range(const void *a, const void *b) {
    const range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int cmp_name(const void *a, const void *b) {
    const spine_tensor *x = *(const spine_tensor *const *)a, *y = *(const spine_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static spine_status parse_entry(const json_doc *d, const json_node *key, const json_node *v,
                                spine_tensor *t, uint64_t *begin, uint64_t *end, spine_error *err) {
    const char *name = json_str(d, key);
    if (v->type != JSON_OBJECT)
        return spine_fail(err, SPINE_ERR_FORMAT, "tensor '%s': entry is not an object", name);
    const json_node *dt = NULL, *shape = NULL, *offs = NULL;
    for (const json_node *k = json_child(d, v); k; k = json_next(d, json_next(d, k))) {
        const char *kn = json_str(d, k);
        const json_node *val = json_next(d, k);
        if (strcmp(kn, "dtype") == 0)
            dt = val;
        else if (strcmp(kn, "shape") == 0)
            shape = val;
        else if (strcmp(kn, "data_offsets") == 0)
            offs = val;
        else
            return spine_fail(err, SPINE_ERR_FORMAT, "tensor '%s': unknown key '%s'", name, kn);
    }
    if (!dt || dt->type != JSON_STRING)
        return spine_fail(err, SPINE_ERR_FORMAT, "tensor '%s': missing or non-string dtype", name);
    if (spine_dtype_parse(json_str(d, dt), &t->dtype) != 0)
        return spine_fail(err, SPINE_ERR_UNSUPPORTED,
                          "tensor '%s': dtype '%s' is not supported "
                          "(F32, F16, BF16, I8, U8, I32, I64)",
                          name, json_str(d, dt));
    if (!shape || shape->type != JSON_ARRAY)
        return spine_fail(err, SPINE_ERR_FORMAT, "tensor '%s': missing shape", name);
    if (shape->count > SPINE_MAX_DIMS)
        return spine_fail(err, SPINE_ERR_LIMIT, "tensor '%s': %u dimensions (at most %d)", name,
                          shape->count, SPINE_MAX_DIMS);
    t->ndim = 0;
    for (const json_node *e = json_child(d, shape); e; e = json_next(d, e)) {
        int64_t dim;
        if (!json_get_i64(d, e, &dim) || dim < 0)
            return spine_fail(err, SPINE_ERR_FORMAT,
                              "tensor '%s': shape entries must be non-negative integers", name);
        t->shape[t->ndim++] = dim;
    }
    if (!offs || offs->type != JSON_ARRAY || offs->count != 2)
        return spine_fail(err, SPINE_ERR_FORMAT, "tensor '%s': data_offsets must be [begin, end]",
                          name);
    const json_node *b = json_child(d, offs), *e = json_next(d, b);
    if (!json_get_u64(d, b, begin) || !json_get_u64(d, e, end) || *end < *begin)
        return spine_fail(err, SPINE_ERR_FORMAT, "tensor '%s': bad data_offsets", name);
    size_t numel, bytes;
    if (!spine_tensor_numel(t, &numel) ||
        !spine_mul_size(numel, spine_dtype_size(t->dtype), &bytes))
        return spine_fail(err, SPINE_ERR_FORMAT, "tensor '%s': shape overflows", name);
    if ((uint64_t)bytes != *end - *begin)
        return spine_fail(err, SPINE_ERR_FORMAT,
                          "tensor '%s': shape and dtype give %zu bytes but data_offsets span %llu",
                          name, bytes, (unsigned long long)(*end - *begin));
    t->nbytes = bytes;
    return SPINE_OK;
}

static spine_status parse_header(const uint8_t *buf, size_t len, spine_tensors *ts,
                                 const uint8_t **data_out, size_t *data_len, range **ranges_out,
                                 spine_error *err) {
    if (len < 8)
        return spine_fail(err, SPINE_ERR_FORMAT, "file of %zu bytes is too short for a header",
                          len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    if (hlen > ST_MAX_HEADER)
        return spine_fail(err, SPINE_ERR_LIMIT, "header of %llu bytes exceeds the 100 MB limit",
                          (unsigned long long)hlen);
    if (hlen > len - 8)
        return spine_fail(err, SPINE_ERR_FORMAT,
                          "header claims %llu bytes but the file holds %zu after the length",
                          (unsigned long long)hlen, len - 8);
    if (hlen < 2 || buf[8] != '{')
        return spine_fail(err, SPINE_ERR_FORMAT, "header does not start with '{'");
    json_doc d;
    spine_status st = json_parse(&d, (const char *)buf + 8, (size_t)hlen, err);
    if (st != SPINE_OK) {
        spine_error_prefix(err, "header: ");
        return st;
    }
    const json_node *root = json_root(&d);
    size_t ntensors = 0;
    for (const json_node *k = json_child(&d, root); k; k = json_next(&d, json_next(&d, k)))
        if (strcmp(json_str(&d, k), "__metadata__") != 0) ntensors++;
    range *ranges = calloc(ntensors ? ntensors : 1, sizeof *ranges);
    if (!ranges) {
        json_free(&d);
        return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    }
    const uint8_t *data = buf + 8 + hlen;
    size_t dlen = len - 8 - (size_t)hlen;
    for (const json_node *k = json_child(&d, root); k; k = json_next(&d, json_next(&d, k))) {
        const json_node *v = json_next(&d, k);
        const char *name = json_str(&d, k);
        if (strcmp(name, "__metadata__") == 0) {
            if (v->type != JSON_OBJECT) {
                st = spine_fail(err, SPINE_ERR_FORMAT, "__metadata__ is not an object");
                goto fail;
            }
            spine_buf mb = {0};
            spine_buf_puts(&mb, "{");
            bool first = true;
            for (const json_node *mk = json_child(&d, v); mk;
                 mk = json_next(&d, json_next(&d, mk))) {
                const json_node *mv = json_next(&d, mk);
                if (mv->type != JSON_STRING) {
                    spine_buf_free(&mb);
                    st = spine_fail(err, SPINE_ERR_FORMAT, "__metadata__ values must be strings");
                    goto fail;
                }
                if (!first) spine_buf_puts(&mb, ",");
                first = false;
                json_write_string(&mb, json_str(&d, mk), mk->len);
                spine_buf_puts(&mb, ":");
                json_write_string(&mb, json_str(&d, mv), mv->len);
            }
            spine_buf_puts(&mb, "}");
            if (mb.failed) {
                spine_buf_free(&mb);
                st = spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
                goto fail;
            }
            free(ts->metadata_json);
            ts->metadata_json = mb.data;
            continue;
        }
        if (k->len == 0 || strlen(name) != k->len) {
            st = spine_fail(err, SPINE_ERR_FORMAT, "tensor with an empty or NUL-containing name");
            goto fail;
        }
        spine_tensor tmp = {0};
        uint64_t b, e;
        st = parse_entry(&d, k, v, &tmp, &b, &e, err);
        if (st != SPINE_OK) goto fail;
        if (e > dlen) {
            st = spine_fail(err, SPINE_ERR_FORMAT,
                            "tensor '%s': data_offsets end %llu beyond the %zu-byte buffer", name,
                            (unsigned long long)e, dlen);
            goto fail;
        }
        spine_tensor *t = push(ts);
        if (!t || !(tmp.name = strdup(name))) {
            if (t) ts->n--;
            st = spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
            goto fail;
        }
        *t = tmp;
        t->data = data + b;
        ranges[ts->n - 1] = (range){b, e, ts->n - 1};
    }
    json_free(&d);
    *data_out = data;
    *data_len = dlen;
    *ranges_out = ranges;
    return SPINE_OK;
fail:
    json_free(&d);
    free(ranges);
    return st;
}

static spine_status validate(spine_tensors *ts, range *ranges, size_t dlen, spine_error *err) {
    /* unique names */
    if (ts->n > 1) {
        const spine_tensor **byname = malloc(ts->n * sizeof *byname);
        if (!byname) return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < ts->n; i++) byname[i] = &ts->t[i];
        qsort(byname, ts->n, sizeof *byname, cmp_name);
        for (size_t i = 1; i < ts->n; i++) {
            if (strcmp(byname[i - 1]->name, byname[i]->name) == 0) {
                spine_status s =
                    spine_fail(err, SPINE_ERR_FORMAT, "tensor '%s' appears twice", byname[i]->name);
                free(byname);
                return s;
            }
        }
        free(byname);
    }
    /* contiguous, non-overlapping byte ranges covering the buffer */
    qsort(ranges, ts->n, sizeof *ranges, cmp_range);
    uint64_t expect = 0;
    for (size_t i = 0; i < ts->n; i++) {
        if (ranges[i].begin != expect)
            return spine_fail(err, SPINE_ERR_FORMAT,
                              "tensor '%s': data starts at %llu, expected %llu (ranges must be "
                              "contiguous and must not overlap)",
                              ts->t[ranges[i].idx].name, (unsigned long long)ranges[i].begin,
                              (unsigned long long)expect);
        expect = ranges[i].end;
    }
    if (expect != dlen)
        return spine_fail(err, SPINE_ERR_FORMAT,
                          "tensors cover %llu bytes but the buffer holds %zu",
                          (unsigned long long)expect, dlen);
    return SPINE_OK;
}

static spine_status place_data(spine_tensors *ts, bool copy, spine_error *err) {
    for (size_t i = 0; i < ts->n; i++) {
        spine_tensor *t = &ts->t[i];
        size_t align = spine_dtype_size(t->dtype);
        if (!copy && ((uintptr_t)t->data % align) == 0) continue;
        if (t->nbytes == 0) {
            t->data = NULL;
            continue;
        }
        void *p = spine_alloc_aligned(t->nbytes);
        if (!p)
            return spine_fail(err, SPINE_ERR_NOMEM, "tensor '%s': cannot copy %zu bytes", t->name,
                              t->nbytes);
        memcpy(p, t->data, t->nbytes);
        t->data = p;
        t->owned = p;
    }
    return SPINE_OK;
}

spine_status st_parse(const void *buf, size_t len, bool copy, spine_tensors *out,
                      spine_error *err) {
    memset(out, 0, sizeof *out);
    const uint8_t *data = NULL;
    size_t dlen = 0;
    range *ranges = NULL;
    spine_status st = parse_header(buf, len, out, &data, &dlen, &ranges, err);
    if (st == SPINE_OK) st = validate(out, ranges, dlen, err);
    if (st == SPINE_OK) st = place_data(out, copy, err);
    free(ranges);
    if (st != SPINE_OK) st_free(out);
    return st;
}

spine_status st_open(const char *path, spine_tensors *out, spine_error *err) {
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return spine_fail(err, SPINE_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return spine_fail(err, SPINE_ERR_IO, "%s: not a readable regular file", path);
    }
    size_t len = (size_t)sb.st_size;
    if (len < 8) {
        close(fd);
        return spine_fail(err, SPINE_ERR_FORMAT, "%s: file of %zu bytes is too short", path, len);
    }
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return spine_fail(err, SPINE_ERR_IO, "%s: mmap: %s", path, strerror(errno));
    spine_status st = st_parse(map, len, false, out, err);
    if (st != SPINE_OK) {
        munmap(map, len);
        spine_error_prefix(err, "%s: ", path);
        return st;
    }
    out->map = map;
    out->map_len = len;
    return SPINE_OK;
}

static spine_status write_all(int fd, const void *p, size_t n, const char *path, spine_error *err) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            return spine_fail(err, SPINE_ERR_IO, "%s: write failed: %s", path,
                              w < 0 ? strerror(errno) : "no progress");
        c += w;
        n -= (size_t)w;
    }
    return SPINE_OK;
}

spine_status st_write(const char *path, const spine_tensors *ts, const char *metadata_json,
                      spine_progress_fn progress, void *progress_arg, spine_error *err) {
    spine_buf h = {0}, tmpname = {0};
    spine_status st = SPINE_OK;
    spine_buf_puts(&h, "{");
    if (metadata_json) {
        spine_buf_puts(&h, "\"__metadata__\":");
        spine_buf_puts(&h, metadata_json);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < ts->n; i++) {
        const spine_tensor *t = &ts->t[i];
        if (h.len > 1) spine_buf_puts(&h, ",");
        json_write_string(&h, t->name, strlen(t->name));
        spine_buf_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", spine_dtype_name(t->dtype));
        for (int k = 0; k < t->ndim; k++)
            spine_buf_printf(&h, "%s%lld", k ? "," : "", (long long)t->shape[k]);
        spine_buf_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                         (unsigned long long)(off + t->nbytes));
        off += t->nbytes;
    }
    spine_buf_puts(&h, "}");
    while ((8 + h.len) % 64) spine_buf_puts(&h, " "); /* align the buffer start */
    if (h.failed) {
        spine_buf_free(&h);
        return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    }
    spine_buf_printf(&tmpname, "%s.tmp", path);
    int fd =
        tmpname.failed ? -1 : open(tmpname.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        st = spine_fail(err, SPINE_ERR_IO, "%s: %s", tmpname.data ? tmpname.data : path,
                        strerror(errno));
        goto out;
    }
    uint8_t lenbytes[8];
    uint64_t hl = h.len;
    for (int i = 0; i < 8; i++) lenbytes[i] = (uint8_t)(hl >> (8 * i));
    st = write_all(fd, lenbytes, 8, path, err);
    if (st == SPINE_OK) st = write_all(fd, h.data, h.len, path, err);
    uint64_t done = 0;
    for (size_t i = 0; st == SPINE_OK && i < ts->n; i++) {
        const spine_tensor *t = &ts->t[i];
        const char *p = t->data;
        size_t left = t->nbytes;
        while (st == SPINE_OK && left) {
            size_t chunk = left > (64u << 20) ? (64u << 20) : left;
            st = write_all(fd, p, chunk, path, err);
            p += chunk;
            left -= chunk;
            done += chunk;
            if (progress) progress(progress_arg, done, off);
        }
    }
    if (close(fd) != 0 && st == SPINE_OK)
        st = spine_fail(err, SPINE_ERR_IO, "%s: close: %s", path, strerror(errno));
    if (st == SPINE_OK && rename(tmpname.data, path) != 0)
        st = spine_fail(err, SPINE_ERR_IO, "%s: rename: %s", path, strerror(errno));
    if (st != SPINE_OK) unlink(tmpname.data);
out:
    spine_buf_free(&h);
    spine_buf_free(&tmpname);
    return st;
}
