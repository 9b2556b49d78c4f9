/* test_safetensors.c: the safetensors reader and writer, and their refusals. */
#include "test_util.h"

#include "../../src/base/safetensors.h"

#include <unistd.h>

/* An image: 8-byte length, header text, then `data` bytes of 0..255. */
static uint8_t *image(const char *header, size_t data, size_t *len) {
    size_t h = strlen(header);
    *len = 8 + h + data;
    uint8_t *p = malloc(*len);
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(p + 8, header, h);
    for (size_t i = 0; i < data; i++) p[8 + h + i] = (uint8_t)i;
    return p;
}

static spine_status parse_header(const char *header, size_t data, spine_error *err) {
    size_t len;
    uint8_t *p = image(header, data, &len);
    spine_tensors ts;
    spine_status st = st_parse(p, len, false, &ts, err);
    if (st == SPINE_OK) st_free(&ts);
    free(p);
    return st;
}

static void parses_valid_file_zero_copy(void **state) {
    (void)state;
    const char *h = "{\"__metadata__\":{\"k\":\"v\"},\"b\":{\"dtype\":\"I32\",\"shape\":[2],"
                    "\"data_offsets\":[16,24]},\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],"
                    "\"data_offsets\":[0,16]},\"z\":{\"dtype\":\"U8\",\"shape\":[0],"
                    "\"data_offsets\":[24,24]}}    ";
    /* pad so that 8 + header is a multiple of 8 */
    char hb[512];
    snprintf(hb, sizeof hb, "%s", h);
    while ((8 + strlen(hb)) % 8) strcat(hb, " ");
    size_t len;
    uint8_t *p = image(hb, 24, &len);
    spine_tensors ts;
    assert_int_equal(st_parse(p, len, false, &ts, NULL), SPINE_OK);
    assert_int_equal(ts.n, 3);
    const spine_tensor *a = st_find(&ts, "a");
    assert_non_null(a);
    assert_int_equal(a->dtype, SPINE_DT_F32);
    assert_int_equal(a->ndim, 2);
    assert_ptr_equal(a->data, p + 8 + strlen(hb)); /* in place */
    assert_null(a->owned);
    assert_int_equal(st_find(&ts, "b")->nbytes, 8);
    assert_non_null(strstr(ts.metadata_json, "\"k\":\"v\""));
    st_free(&ts);
    free(p);
}

static void copies_misaligned_tensors(void **state) {
    (void)state;
    const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"; /* 8+53 */
    size_t len;
    uint8_t *p = image(h, 4, &len);
    spine_tensors ts;
    assert_int_equal(st_parse(p, len, false, &ts, NULL), SPINE_OK);
    const spine_tensor *a = st_find(&ts, "a");
    if (((uintptr_t)(p + 8 + strlen(h))) % 4) {
        assert_non_null(a->owned);
        assert_true((uintptr_t)a->data % 4 == 0);
    }
    assert_memory_equal(a->data, p + 8 + strlen(h), 4);
    st_free(&ts);
    free(p);
}

static void rejects_hostile_headers(void **state) {
    (void)state;
    struct {
        const char *header;
        size_t data;
        spine_status code;
        const char *phrase;
    } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, SPINE_ERR_FORMAT,
         "span"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\","
         "\"shape\":[1],\"data_offsets\":[2,6]}}",
         8, SPINE_ERR_FORMAT, "contiguous"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, SPINE_ERR_FORMAT,
         "contiguous"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, SPINE_ERR_FORMAT,
         "buffer holds"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, SPINE_ERR_FORMAT,
         "beyond"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, SPINE_ERR_FORMAT,
         "bad data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":["
         "0,4]}}",
         4, SPINE_ERR_FORMAT, "overflows"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, SPINE_ERR_FORMAT,
         "non-negative"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, SPINE_ERR_FORMAT,
         "non-negative"},
        {"{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8,
         SPINE_ERR_UNSUPPORTED, "F64"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
         SPINE_ERR_LIMIT, "dimensions"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, SPINE_ERR_FORMAT, "data_offsets"},
        {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, SPINE_ERR_FORMAT, "dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4,
         SPINE_ERR_FORMAT, "unknown key"},
        {"{\"a\":[1]}", 0, SPINE_ERR_FORMAT, "not an object"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\","
         "\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, SPINE_ERR_FORMAT, "twice"},
        {"{\"__metadata__\":{\"k\":1}}", 0, SPINE_ERR_FORMAT, "strings"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, SPINE_ERR_FORMAT,
         "json"},
        {"[]", 0, SPINE_ERR_FORMAT, "'{'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,18446744073709551616]}}", 4,
         SPINE_ERR_FORMAT, "bad data_offsets"},
    };
    for (size_t i = 0; i < SPINE_ARRAY_LEN(cases); i++) {
        spine_error e = {0};
        spine_status st = parse_header(cases[i].header, cases[i].data, &e);
        if (st != cases[i].code || !strstr(e.msg, cases[i].phrase))
            fail_msg("case %zu: status %d '%s', wanted %d '%s'", i, st, e.msg, cases[i].code,
                     cases[i].phrase);
    }
}

static void rejects_bad_lengths(void **state) {
    (void)state;
    uint8_t p[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    spine_tensors ts;
    assert_fails_with(st_parse(p, 16, false, &ts, err), SPINE_ERR_LIMIT, "100 MB");
    uint8_t q[16] = {100};
    assert_fails_with(st_parse(q, 16, false, &ts, err), SPINE_ERR_FORMAT, "claims");
    assert_fails_with(st_parse(q, 5, false, &ts, err), SPINE_ERR_FORMAT, "too short");
}

static void every_truncation_is_refused_cleanly(void **state) {
    (void)state;
    spine_tensors ts = {0};
    float a[3] = {1, 2, 3};
    int64_t sa[1] = {3};
    int32_t b[2] = {4, 5};
    int64_t sb[2] = {1, 2};
    void *pa = spine_alloc_aligned(12), *pb = spine_alloc_aligned(8);
    memcpy(pa, a, 12);
    memcpy(pb, b, 8);
    st_add_owned(&ts, "alpha", SPINE_DT_F32, 1, sa, pa, 12);
    st_add_owned(&ts, "beta", SPINE_DT_I32, 2, sb, pb, 8);
    char path[] = "/tmp/spine_st_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    assert_int_equal(st_write(path, &ts, "{\"who\":\"test\"}", NULL, NULL, NULL), SPINE_OK);
    st_free(&ts);
    char *file;
    size_t len;
    assert_int_equal(spine_read_file(path, 1 << 20, &file, &len, NULL), SPINE_OK);
    assert_int_equal((8 + (file[0] & 0xff)) % 64, 0); /* data start aligned to 64 */
    spine_tensors rd;
    assert_int_equal(st_open(path, &rd, NULL), SPINE_OK);
    assert_int_equal(rd.n, 2);
    assert_memory_equal(st_find(&rd, "alpha")->data, a, 12);
    assert_memory_equal(st_find(&rd, "beta")->data, b, 8);
    assert_int_equal(st_find(&rd, "beta")->shape[1], 2);
    assert_non_null(strstr(rd.metadata_json, "who"));
    st_free(&rd);
    for (size_t cut = 0; cut < len; cut++) {
        spine_error e = {0};
        assert_int_not_equal(st_parse(file, cut, false, &rd, &e), SPINE_OK);
        assert_true(e.msg[0] != 0);
    }
    free(file);
    unlink(path);
}

/* The file pages this process maps, in bytes: RssFile + RssShmem (a file on tmpfs counts as
 * shared memory) from /proc/self/status; -1 if absent */
static long long rss_file(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long long kb, file = -1, shmem = -1;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "RssFile: %lld kB", &kb) == 1) file = kb;
        if (sscanf(line, "RssShmem: %lld kB", &kb) == 1) shmem = kb;
    }
    fclose(f);
    return file < 0 || shmem < 0 ? -1 : (file + shmem) * 1024;
}

/* Moving a mapped tensor onto 2 MiB pages keeps its bytes, leaves its neighbours readable, and
 * stops counting the file pages it alone covered in this process's memory. */
static void move_to_huge_releases_file_pages(void **state) {
    (void)state;
    const size_t big = (size_t)8 << 20;
    spine_tensors ts = {0};
    uint8_t *pb = spine_alloc_aligned(big), *ps = spine_alloc_aligned(4);
    for (size_t i = 0; i < big; i++) pb[i] = (uint8_t)(i * 7 + 3);
    memcpy(ps, "abcd", 4);
    int64_t sbig[1] = {(int64_t)big}, ssmall[1] = {4};
    st_add_owned(&ts, "big", SPINE_DT_U8, 1, sbig, pb, big);
    st_add_owned(&ts, "small", SPINE_DT_U8, 1, ssmall, ps, 4);
    char path[] = "/tmp/spine_st_XXXXXX";
    close(mkstemp(path));
    assert_int_equal(st_write(path, &ts, NULL, NULL, NULL, NULL), SPINE_OK);
    st_free(&ts);
    spine_tensors rd;
    assert_int_equal(st_open(path, &rd, NULL), SPINE_OK);
    spine_tensor *t = (spine_tensor *)st_find(&rd, "big");
    unsigned sum = 0;
    for (size_t i = 0; i < big; i += 64) sum += ((const uint8_t *)t->data)[i]; /* map it all */
    long long before = rss_file();
    assert_int_equal(st_move_to_huge(&rd, t, NULL), SPINE_OK);
    long long after = rss_file();
    assert_true(t->owned_huge);
    unsigned sum2 = 0;
    for (size_t i = 0; i < big; i += 64) sum2 += ((const uint8_t *)t->data)[i];
    assert_int_equal(sum, sum2);
    for (size_t i = 0; i < big; i += 4099)
        assert_int_equal(((const uint8_t *)t->data)[i], (uint8_t)(i * 7 + 3));
    assert_memory_equal(st_find(&rd, "small")->data, "abcd", 4);
    if (before >= 0) /* its pages are no longer mapped in (other mappings move a little too) */
        assert_true(before - after >= (long long)big * 3 / 4);
    st_free(&rd);
    unlink(path);
}

static void open_reports_missing_file(void **state) {
    (void)state;
    spine_tensors ts;
    assert_fails_with(st_open("/nonexistent/x.safetensors", &ts, err), SPINE_ERR_IO,
                      "/nonexistent/x.safetensors");
}

int test_group_safetensors(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_valid_file_zero_copy),
        cmocka_unit_test(copies_misaligned_tensors),
        cmocka_unit_test(rejects_hostile_headers),
        cmocka_unit_test(rejects_bad_lengths),
        cmocka_unit_test(every_truncation_is_refused_cleanly),
        cmocka_unit_test(move_to_huge_releases_file_pages),
        cmocka_unit_test(open_reports_missing_file),
    };
    return cmocka_run_group_tests_name("safetensors", tests, NULL, NULL);
}
