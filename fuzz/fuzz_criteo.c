/* fuzz_criteo.c: arbitrary bytes as a Criteo TSV stream through the line reader and parser;
 * every accepted index must fall inside its table. */
#include "io/io.h"

#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const int64_t rows[26] = {1,   2, 3,  5,   8,   13,  21,  34,  55, 89, 144, 233, 377,
                                     610, 7, 11, 100, 200, 300, 400, 500, 16, 32, 64,  128, 999};
    FILE *f = fmemopen((void *)data, size ? size : 1, "rb");
    if (!f) return 0;
    line_reader r;
    if (line_reader_init(&r, f, NULL) != SPINE_OK) {
        fclose(f);
        return 0;
    }
    const char *line;
    size_t len;
    bool too_long;
    float dense[13];
    int64_t idx[26];
    criteo_error e;
    while (line_reader_next(&r, &line, &len, &too_long) == 1) {
        if (too_long) continue;
        if (criteo_parse_line(line, len, 13, 26, rows, dense, idx, &e) == 0)
            for (int t = 0; t < 26; t++)
                if (idx[t] < 0 || idx[t] >= rows[t]) __builtin_trap();
    }
    line_reader_free(&r);
    fclose(f);
    return 0;
}
