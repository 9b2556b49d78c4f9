/* cli.h: shared pieces of the spine command line: option parsing, progress lines, the commands. */
#ifndef SPINE_CLI_H
#define SPINE_CLI_H

#include "../base/base.h"
#include "../model/dlrm.h"

#include <stdio.h>

typedef struct cli_opt {
    const char *name; /* long name without dashes; "o" style single letters allowed */
    bool has_arg;
    const char *help;
    const char *val; /* parsed value (or "1" for flags) */
} cli_opt;

/* Parse argv into opts; positional arguments are collected into pos (at most maxpos).
 * Returns 0, or prints a message naming cmd and returns 2. */
int cli_parse(const char *cmd, int argc, char **argv, cli_opt *opts, int nopts, char **pos,
              int maxpos, int *npos);
void cli_usage(const char *usage, const cli_opt *opts, int nopts);
const char *cli_get(const cli_opt *opts, int nopts, const char *name);
/* Numeric option readers: print an error and return false on a bad value. */
bool cli_int(const char *opt, const char *s, long long lo, long long hi, long long *out);
bool cli_double(const char *opt, const char *s, double lo, double hi, double *out);
/* A byte count: digits with an optional K/M/G/T (powers of 1024, "KiB"/"MB" spellings too). */
bool cli_bytes(const char *opt, const char *s, uint64_t *out);
/* Comma-separated positive ints ("1,16,256"). */
int cli_int_list(const char *opt, const char *s, int *out, int max);

/* A progress callback (spine_progress_fn) printing to stderr: a live line on a terminal,
 * a line every 10% otherwise. arg is the label. */
typedef struct cli_progress {
    const char *label;
    double last;
    int last_decile;
    bool started;
} cli_progress;
void cli_progress_cb(void *arg, uint64_t done, uint64_t total);

void cli_print_error(const char *cmd, const spine_error *e);
/* --preset, --rows-scale, --seed, --dtype into generation options (the preset may be NULL);
 * false, with a message, on a bad value. */
bool cli_gen_opts(const char *cmd, const cli_opt *o, int n, dlrm_gen_opts *g);
/* --placement auto|map|huge */
bool cli_placement(const char *s, spine_placement *out);
/* "tables: 1.02 GB, 1.02 GB of them advised onto 2 MiB pages (1.00 GB backed)" */
void cli_print_placement(FILE *f, const spine_model_desc *d);

/* An SVG line chart: nseries lines y[s][0..n) over x[0..n) (non-finite points skipped), with
 * a legend of names. False when the file cannot be written. */
bool cli_svg_lines(const char *path, const char *title, const char *xlabel, const char *ylabel,
                   int nseries, const char *const *names, int n, const double *x,
                   const double *const *y);

/* A DLRM from --model DIR (with --placement) or generated from --preset (cli_gen_opts);
 * 0, or the exit status after printing the error. */
int cli_dlrm_model(const char *cmd, cli_opt *o, int n, spine_model **m);

int cmd_model(int argc, char **argv);
int cmd_trace(int argc, char **argv);
int cmd_bench_sls(int argc, char **argv);
int cmd_profile(int argc, char **argv);
int cmd_infer(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_load(int argc, char **argv);
int cmd_moe(int argc, char **argv);
/* moe trace gen | cache-sim | place (sub names the first word) */
int cmd_moe_trace(const char *sub, int argc, char **argv);

#endif
