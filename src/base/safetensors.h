/* safetensors.h: reading and writing the safetensors format, and the tensor collection that
 * models are built from.
 *
 * Layout (https://github.com/huggingface/safetensors): 8-byte little-endian header length N,
 * N bytes of JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__":
 * {str: str}}, then the byte buffer; offsets are relative to the buffer. spine enforces the
 * reference implementation's rules: known dtype, shape product times dtype size equals the
 * byte range, ranges inside the buffer, sorted ranges contiguous from 0 to the buffer's end (no
 * overlap, no hole), unique names, header at most 100 MB.
 *
 * A reader maps the file; tensors whose data is aligned to their element size are used in
 * place (zero copy), others are copied once into aligned memory owned by the collection. */
#ifndef SPINE_SAFETENSORS_H
#define SPINE_SAFETENSORS_H

#include "base.h"

typedef enum spine_dtype {
    SPINE_DT_F32,
    SPINE_DT_F16,
    SPINE_DT_BF16,
    SPINE_DT_I8,
    SPINE_DT_U8,
    SPINE_DT_I32,
    SPINE_DT_I64,
} spine_dtype;

#define SPINE_MAX_DIMS 8
#define ST_MAX_HEADER ((size_t)100 * 1000 * 1000)

typedef struct spine_tensor {
    char *name;
    spine_dtype dtype;
    int ndim;
    int64_t shape[SPINE_MAX_DIMS];
    const void *data;
    size_t nbytes;
    void *owned;     /* non-NULL when the collection owns a copy (freed with it) */
    bool owned_huge; /* owned came from spine_alloc_huge (nbytes long) */
} spine_tensor;

typedef struct spine_tensors {
    spine_tensor *t;
    size_t n, cap;
    void *map; /* the mapped file, if any */
    size_t map_len;
    char *metadata_json; /* "__metadata__" object as JSON text, or NULL */
} spine_tensors;

const char *spine_dtype_name(spine_dtype t);
size_t spine_dtype_size(spine_dtype t);
int spine_dtype_parse(const char *s, spine_dtype *out); /* 0 on success */
/* Number of elements; false when the product overflows. */
bool spine_tensor_numel(const spine_tensor *t, size_t *out);

/* Parse a safetensors image held in memory (the fuzzer's entry). When `copy` is false tensor
 * data points into buf, which must outlive the collection; when true every tensor is copied. */
spine_status st_parse(const void *buf, size_t len, bool copy, spine_tensors *out, spine_error *err);
/* Map and parse a file. */
spine_status st_open(const char *path, spine_tensors *out, spine_error *err);
void st_free(spine_tensors *ts);
const spine_tensor *st_find(const spine_tensors *ts, const char *name);

/* Add a tensor that the collection owns (data is taken, must come from spine_alloc_aligned, or
 * from spine_alloc_huge when huge); used by generators. Returns the new tensor or NULL. */
spine_tensor *st_add_owned(spine_tensors *ts, const char *name, spine_dtype dt, int ndim,
                           const int64_t *shape, void *data, size_t nbytes);
spine_tensor *st_add_owned_huge(spine_tensors *ts, const char *name, spine_dtype dt, int ndim,
                                const int64_t *shape, void *data, size_t nbytes);
/* Move tensor t of ts into owned memory on 2 MiB pages. When its bytes were in ts's file
 * mapping, the process stops mapping the file pages the tensor alone covered (the page cache
 * keeps them): the weights are then counted once in this process's memory, not twice. */
spine_status st_move_to_huge(spine_tensors *ts, spine_tensor *t, spine_error *err);
/* The same, into 64-byte aligned memory when !huge (a small tensor that must be writable:
 * a 2 MiB mapping each would waste most of it); a tensor already owned stays where it is. */
spine_status st_move_to_owned(spine_tensors *ts, spine_tensor *t, bool huge, spine_error *err);

/* Write tensors in collection order to path (atomically: path.tmp then rename). Tensor data
 * start at 64-byte aligned file offsets whenever the sizes before them allow. metadata_json,
 * when not NULL, must be a JSON object of string values. progress (may be NULL) is called with
 * bytes written so far and the total. */
typedef void (*spine_progress_fn)(void *arg, uint64_t done, uint64_t total);
spine_status st_write(const char *path, const spine_tensors *ts, const char *metadata_json,
                      spine_progress_fn progress, void *progress_arg, spine_error *err);

#endif
