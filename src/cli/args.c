/* args.c: option parsing and progress output for the spine command line. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int cli_parse(const char *cmd, int argc, char **argv, cli_opt *opts, int nopts, char **pos,
              int maxpos, int *npos) {
    *npos = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || a[1] == 0) {
            if (*npos >= maxpos) {
                fprintf(stderr, "spine %s: unexpected argument '%s'\n", cmd, a);
                return 2;
            }
            pos[(*npos)++] = argv[i];
            continue;
        }
        const char *name = a + (a[1] == '-' ? 2 : 1);
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        cli_opt *o = NULL;
        for (int k = 0; k < nopts; k++)
            if (strlen(opts[k].name) == nlen && strncmp(opts[k].name, name, nlen) == 0)
                o = &opts[k];
        if (!o) {
            fprintf(stderr, "spine %s: unknown option '%s' (see 'spine %s --help')\n", cmd, a, cmd);
            return 2;
        }
        if (o->has_arg) {
            if (eq) {
                o->val = eq + 1;
            } else if (i + 1 < argc) {
                o->val = argv[++i];
            } else {
                fprintf(stderr, "spine %s: option '%s' needs a value\n", cmd, a);
                return 2;
            }
        } else {
            if (eq) {
                fprintf(stderr, "spine %s: option '--%s' takes no value\n", cmd, o->name);
                return 2;
            }
            o->val = "1";
        }
    }
    return 0;
}

void cli_usage(const char *usage, const cli_opt *opts, int nopts) {
    fprintf(stdout, "%s\n", usage);
    for (int k = 0; k < nopts; k++)
        fprintf(stdout, "  %s%-18s %s\n", strlen(opts[k].name) == 1 ? "-" : "--", opts[k].name,
                opts[k].help);
}

const char *cli_get(const cli_opt *opts, int nopts, const char *name) {
    for (int k = 0; k < nopts; k++)
        if (strcmp(opts[k].name, name) == 0) return opts[k].val;
    return NULL;
}

bool cli_int(const char *opt, const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "spine: %s must be an integer in [%lld, %lld], not '%s'\n", opt, lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_double(const char *opt, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "spine: %s must be a number in [%g, %g], not '%s'\n", opt, lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_bytes(const char *opt, const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    int shift = 0;
    switch (*end) {
    case 'K':
    case 'k':
        shift = 10;
        end++;
        break;
    case 'M':
    case 'm':
        shift = 20;
        end++;
        break;
    case 'G':
    case 'g':
        shift = 30;
        end++;
        break;
    case 'T':
    case 't':
        shift = 40;
        end++;
        break;
    default:
        break;
    }
    if (shift && (*end == 'i' || *end == 'I')) end++;
    if (*end == 'B' || *end == 'b') end++;
    if (errno || end == s || *end || s[0] == '-' || v == 0 || (shift && v > (~0ull >> shift))) {
        fprintf(stderr,
                "spine: %s must be a positive byte count (K, M, G, T suffixes: powers of "
                "1024), not '%s'\n",
                opt, s);
        return false;
    }
    *out = (uint64_t)v << shift;
    return true;
}

int cli_int_list(const char *opt, const char *s, int *out, int max) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 1 || v > (1 << 20) || n >= max || (*end && *end != ',')) {
            fprintf(stderr, "spine: %s must be a list of up to %d integers in [1, 1048576]: '%s'\n",
                    opt, max, s);
            return -1;
        }
        out[n++] = (int)v;
        p = *end ? end + 1 : end;
    }
    if (n == 0) fprintf(stderr, "spine: %s is empty\n", opt);
    return n ? n : -1;
}

void cli_progress_cb(void *arg, uint64_t done, uint64_t total) {
    cli_progress *p = arg;
    if (total < (64u << 20)) return; /* small jobs finish before anyone waits */
    double now = spine_now();
    int decile = (int)(done * 10 / (total ? total : 1));
    bool tty = isatty(2);
    if (done >= total && p->last_decile >= 10) return; /* the end is printed once */
    if (done < total) {
        if (tty && now - p->last < 0.2) return;
        if (!tty && decile <= p->last_decile && p->started) return;
    }
    p->started = true;
    p->last = now;
    p->last_decile = decile;
    fprintf(stderr, "%s%s: %5.1f%% (%.2f of %.2f GB)%s", tty ? "\r" : "", p->label,
            100.0 * (double)done / (double)(total ? total : 1), (double)done / 1e9,
            (double)total / 1e9, tty && done < total ? "" : "\n");
    fflush(stderr);
}

void cli_print_error(const char *cmd, const spine_error *e) {
    fprintf(stderr, "spine %s: error: %s\n", cmd, e->msg);
}

bool cli_placement(const char *s, spine_placement *out) {
    if (!s || strcmp(s, "auto") == 0)
        *out = SPINE_PLACE_AUTO;
    else if (strcmp(s, "map") == 0)
        *out = SPINE_PLACE_MAP;
    else if (strcmp(s, "huge") == 0)
        *out = SPINE_PLACE_HUGE;
    else {
        fprintf(stderr, "spine: --placement must be auto, map or huge, not '%s'\n", s);
        return false;
    }
    return true;
}

void cli_print_placement(FILE *f, const spine_model_desc *d) {
    int64_t backed = spine_huge_bytes();
    fprintf(f, "tables: %.3f GB, %.3f GB advised onto 2 MiB pages", (double)d->emb_bytes / 1e9,
            (double)d->emb_bytes_huge / 1e9);
    if (backed >= 0)
        fprintf(f, " (%.3f GB of this process on huge pages now)", (double)backed / 1e9);
    if (d->emb_bytes_huge < d->emb_bytes) fprintf(f, "; the rest on 4 KiB pages");
    fprintf(f, "\n");
}

bool cli_gen_opts(const char *cmd, const cli_opt *o, int n, dlrm_gen_opts *g) {
    const char *v;
    long long x;
    *g = (dlrm_gen_opts){.preset = cli_get(o, n, "preset"), .rows_scale = 1.0, .seed = 1};
    if ((v = cli_get(o, n, "rows-scale")) &&
        !cli_double("--rows-scale", v, 1e-9, 1024, &g->rows_scale))
        return false;
    if ((v = cli_get(o, n, "seed"))) {
        if (!cli_int("--seed", v, 0, INT64_MAX, &x)) return false;
        g->seed = (uint64_t)x;
    }
    if ((v = cli_get(o, n, "dtype"))) {
        if (spine_rowtype_parse(v, &g->rowtype) != 0) {
            fprintf(stderr, "spine %s: --dtype must be f32, f16, int8 or int4\n", cmd);
            return false;
        }
        g->has_rowtype = 1;
    }
    return true;
}
