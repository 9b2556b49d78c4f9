/* util.c: aligned allocation, the growable buffer, whole-file read and atomic write, time. */
#include "base.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void *spine_alloc_aligned(size_t bytes) {
    if (bytes == 0) return NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes) return NULL;
    return aligned_alloc(64, rounded);
}

void spine_free_aligned(void *p) {
    free(p);
}

static bool buf_reserve(spine_buf *b, size_t extra) {
    if (b->failed) return false;
    size_t need;
    if (!spine_add_size(b->len, extra, &need) || !spine_add_size(need, 1, &need)) {
        b->failed = true;
        return false;
    }
    if (need <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->data = p;
    b->cap = cap;
    return true;
}

void spine_buf_append(spine_buf *b, const void *p, size_t n) {
    if (!buf_reserve(b, n)) return;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
}

void spine_buf_puts(spine_buf *b, const char *s) {
    spine_buf_append(b, s, strlen(s));
}

void spine_buf_printf(spine_buf *b, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !buf_reserve(b, (size_t)n)) {
        if (n < 0) b->failed = true;
        va_end(ap2);
        return;
    }
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    b->len += (size_t)n;
}

void spine_buf_free(spine_buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void spine_sort_doubles(double *v, size_t n) {
    if (n > 1) qsort(v, n, sizeof *v, cmp_double);
}

double spine_percentile(const double *sorted, size_t n, double p) {
    if (n == 0) return 0;
    double r = p / 100.0 * (double)(n - 1);
    size_t i = (size_t)r;
    double f = r - (double)i;
    return i + 1 < n ? sorted[i] * (1 - f) + sorted[i + 1] * f : sorted[i];
}

double spine_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

uint64_t spine_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

spine_status spine_read_file(const char *path, size_t max_bytes, char **out, size_t *len,
                             spine_error *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return spine_fail(err, SPINE_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return spine_fail(err, SPINE_ERR_IO, "%s: %s", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return spine_fail(err, SPINE_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        close(fd);
        return spine_fail(err, SPINE_ERR_LIMIT, "%s: %lld bytes, more than the limit of %zu", path,
                          (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *p = malloc(n + 1);
    if (!p) {
        close(fd);
        return spine_fail(err, SPINE_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, n + 1);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            free(p);
            close(fd);
            return spine_fail(err, SPINE_ERR_IO, "%s: read failed: %s", path, strerror(e));
        }
        got += (size_t)r;
    }
    close(fd);
    p[n] = 0;
    *out = p;
    if (len) *len = n;
    return SPINE_OK;
}

spine_status spine_write_file(const char *path, const void *data, size_t len, spine_error *err) {
    spine_buf tmp = {0};
    spine_buf_printf(&tmp, "%s.tmp", path);
    if (tmp.failed) return spine_fail(err, SPINE_ERR_NOMEM, "out of memory");
    int fd = open(tmp.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        spine_status s = spine_fail(err, SPINE_ERR_IO, "%s: %s", tmp.data, strerror(errno));
        spine_buf_free(&tmp);
        return s;
    }
    const char *p = data;
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, p + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = w < 0 ? errno : EIO;
            close(fd);
            unlink(tmp.data);
            spine_status s =
                spine_fail(err, SPINE_ERR_IO, "%s: write failed: %s", tmp.data, strerror(e));
            spine_buf_free(&tmp);
            return s;
        }
        done += (size_t)w;
    }
    if (close(fd) != 0 || rename(tmp.data, path) != 0) {
        int e = errno;
        unlink(tmp.data);
        spine_buf_free(&tmp);
        return spine_fail(err, SPINE_ERR_IO, "%s: %s", path, strerror(e));
    }
    spine_buf_free(&tmp);
    return SPINE_OK;
}

spine_status spine_mkdir_p(const char *path, spine_error *err) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return spine_fail(err, SPINE_ERR_INVALID, "bad folder path");
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char c = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return spine_fail(err, SPINE_ERR_IO, "%s: %s", buf, strerror(errno));
        buf[i] = c;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return spine_fail(err, SPINE_ERR_IO, "%s: not a folder", path);
    return SPINE_OK;
}

#define HUGE_PAGE ((size_t)2 << 20)

void *spine_alloc_huge(size_t bytes) {
    if (bytes == 0) return NULL;
    size_t len = (bytes + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    if (len < bytes || len > SIZE_MAX - HUGE_PAGE) return NULL;
    /* over-allocate by one huge page and trim, so the start is 2 MiB aligned */
    uint8_t *p =
        mmap(NULL, len + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    uint8_t *a = (uint8_t *)(((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (a > p) munmap(p, (size_t)(a - p));
    size_t tail = (size_t)(p + len + HUGE_PAGE - (a + len));
    if (tail) munmap(a + len, tail);
    madvise(a, len, MADV_HUGEPAGE); /* advice: refused where THP is off, and that is fine */
    return a;
}

void spine_free_huge(void *p, size_t bytes) {
    if (!p) return;
    munmap(p, (bytes + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1));
}

static int64_t meminfo_field(const char *path, const char *field) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[256];
    int64_t v = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            v = strtoll(line + n + 1, NULL, 10) * 1024;
            break;
        }
    }
    fclose(f);
    return v;
}

int64_t spine_huge_bytes(void) {
    return meminfo_field("/proc/self/smaps_rollup", "AnonHugePages");
}
int64_t spine_llc_bytes(void) {
    long v = -1;
#ifdef _SC_LEVEL3_CACHE_SIZE
    v = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
    if (v > 0) return v;
    FILE *f = fopen("/sys/devices/system/cpu/cpu0/cache/index3/size", "r");
    long long k = 0;
    if (f) {
        if (fscanf(f, "%lldK", &k) != 1) k = 0;
        fclose(f);
    }
    return k > 0 ? k * 1024 : (int64_t)32 << 20;
}
int64_t spine_mem_available(void) {
    return meminfo_field("/proc/meminfo", "MemAvailable");
}
