/* io.h: model inputs from files: Criteo-format TSV lines and safetensors batch files.
 *
 * Criteo TSV: optional label, then num_dense integer fields, then one hexadecimal categorical
 * field per table, tab-separated. Missing values are empty fields. Dense: negative or missing
 * -> 0, then x -> (float)log1p(x). Categorical: up to 16 hex digits -> unsigned v (missing -> 0),
 * row = v mod rows(table) (facebookresearch/dlrm's --max-ind-range mapping). */
#ifndef SPINE_IO_H
#define SPINE_IO_H

#include "../base/safetensors.h"

#include <stdio.h>

#define LINE_MAX_BYTES ((size_t)1 << 20)

/* Reads lines of at most LINE_MAX_BYTES from a stream without ever holding more. */
typedef struct line_reader {
    FILE *f;
    char *buf;
    size_t len, start; /* bytes held, start of the unread part */
    int64_t lineno;    /* of the line last returned, 1-based */
    bool eof;
} line_reader;

spine_status line_reader_init(line_reader *r, FILE *f, spine_error *err);
void line_reader_free(line_reader *r);
/* 1: a line (without '\n' or a trailing '\r'); 0: end of input; -1: read error. *too_long is set
 * (and the line skipped) when it exceeds LINE_MAX_BYTES. */
int line_reader_next(line_reader *r, const char **line, size_t *len, bool *too_long);

typedef struct criteo_error {
    int column; /* 1-based byte column */
    int field;  /* 1-based field number */
    char msg[160];
} criteo_error;

/* Parse one line. rows[t] is table t's row count. Returns 0, or -1 with *e filled. */
int criteo_parse_line(const char *line, size_t len, int num_dense, int num_tables,
                      const int64_t *rows, float *dense, int64_t *idx, criteo_error *e);

/* A batch read from a safetensors file: "dense" F32 [B, num_dense], "lengths" I32 [T, B],
 * "values" I64 or I32 [N], optional "weights" F32 [N]. */
typedef struct batch_file {
    spine_tensors ts;
    spine_batch batch;
    int64_t nvalues;
    int64_t *values64; /* owned when values were I32 */
} batch_file;

spine_status batch_file_open(const char *path, int num_dense, int num_tables, batch_file *out,
                             spine_error *err);
void batch_file_free(batch_file *bf);

#endif
