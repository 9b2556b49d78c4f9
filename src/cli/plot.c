/* plot.c: small SVG line charts for results people would rather see than read (no external
 * tools): one line per series over a shared x axis, linear axes with ticks, a legend. */
#include "cli.h"

#include <math.h>
#include <stdio.h>

static const char *const colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                     "#9467bd", "#8c564b", "#e377c2", "#17becf"};

static double nice_step(double range) {
    double raw = range / 5, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

bool cli_svg_lines(const char *path, const char *title, const char *xlabel, const char *ylabel,
                   int nseries, const char *const *names, int n, const double *x,
                   const double *const *y) {
    FILE *f = fopen(path, "w");
    if (!f) return false;
    const double W = 720, H = 440, L = 70, R = 150, T = 40, B = 50;
    double x0 = x[0], x1 = x[0], y0 = 0, y1 = 0;
    for (int i = 0; i < n; i++) x0 = fmin(x0, x[i]), x1 = fmax(x1, x[i]);
    for (int s = 0; s < nseries; s++)
        for (int i = 0; i < n; i++)
            if (isfinite(y[s][i])) y1 = fmax(y1, y[s][i]);
    if (x1 <= x0) x1 = x0 + 1;
    if (y1 <= y0) y1 = y0 + 1;
    double ys = nice_step(y1 - y0), xs = nice_step(x1 - x0);
    y1 = ceil(y1 / ys) * ys;
#define PX(v) (L + ((v)-x0) / (x1 - x0) * (W - L - R))
#define PY(v) (H - B - ((v)-y0) / (y1 - y0) * (H - T - B))
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" "
            "fill=\"white\"/>\n<text x=\"%.0f\" y=\"22\" font-size=\"15\">%s</text>\n",
            W, H, L, title);
    for (double v = y0; v <= y1 + ys / 2; v += ys)
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                L, PY(v), W - R, PY(v), L - 6, PY(v) + 4, v);
    for (double v = ceil(x0 / xs) * xs; v <= x1 + xs / 2; v += xs)
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n", PX(v),
                H - B + 18, v);
    fprintf(f,
            "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>"
            "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n"
            "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">%s</text>\n"
            "<text transform=\"translate(18 %.0f) rotate(-90)\" text-anchor=\"middle\">%s</text>\n",
            L, H - B, W - R, H - B, L, T, L, H - B, (L + W - R) / 2, H - 12, xlabel,
            (T + H - B) / 2, ylabel);
    for (int s = 0; s < nseries; s++) {
        const char *col = colors[s % (int)SPINE_ARRAY_LEN(colors)];
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", col);
        for (int i = 0; i < n; i++)
            if (isfinite(y[s][i])) fprintf(f, "%.1f,%.1f ", PX(x[i]), PY(y[s][i]));
        fprintf(f,
                "\"/>\n<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"%s\" "
                "stroke-width=\"2\"/><text x=\"%.0f\" y=\"%.0f\">%s</text>\n",
                W - R + 12, T + 10 + 20.0 * s, W - R + 36, T + 10 + 20.0 * s, col, W - R + 42,
                T + 14 + 20.0 * s, names[s]);
    }
#undef PX
#undef PY
    fprintf(f, "</svg>\n");
    return fclose(f) == 0;
}
