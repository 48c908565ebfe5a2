/* elm plot METRICS.tsv: training curves from the metrics log `elm train`
 * writes, as a self-contained SVG (no fonts or scripts referenced). */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: elm plot METRICS.tsv [-o CURVE.svg]\n"
    "\n"
    "Draw the training and validation loss per epoch of a metrics log written by\n"
    "`elm train` (tab-separated, with a header naming the columns epoch,\n"
    "train_loss, val_loss and optionally val_accuracy or val_auc) as an SVG\n"
    "picture; the validation accuracy (or AUC) goes on a second axis on the\n"
    "right. Default output: the log's name with .svg.\n";

/* Picture geometry, in SVG user units (pixels). */
enum { W = 800, H = 480, LEFT = 80, RIGHT = 80, TOP = 60, BOTTOM = 60 };

enum { C_EPOCH, C_TRAIN, C_VAL, C_ACC, C_AUC, N_COLS };

typedef struct table {
    double *v[N_COLS]; /* column c of row i: v[c][i]; NAN when absent */
    size_t n, cap;
} table;

static void table_free(table *t) {
    for (int c = 0; c < N_COLS; c++) free(t->v[c]);
}

static int table_push(table *t, const double *row) {
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 64;
        for (int c = 0; c < N_COLS; c++) {
            double *p = realloc(t->v[c], cap * sizeof *p);
            if (!p) return -1;
            t->v[c] = p;
        }
        t->cap = cap;
    }
    for (int c = 0; c < N_COLS; c++) t->v[c][t->n] = row[c];
    t->n++;
    return 0;
}

/* Reads the log; CLI_OK or CLI_FAIL after a message naming file:line. */
static int read_log(const char *path, table *t) {
    static const char *names[N_COLS] = {"epoch", "train_loss", "val_loss", "val_accuracy",
                                        "val_auc"};
    FILE *f = fopen(path, "r");
    if (!f) return cli_error("cannot open '%s': %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    int where[64]; /* file column -> our column, or -1 */
    int n_fields = 0, st = CLI_OK;
    while (st == CLI_OK && getline(&line, &cap, f) >= 0) {
        lineno++;
        line[strcspn(line, "\r\n")] = 0;
        if (!*line) continue;
        int k = 0;
        double row[N_COLS];
        for (int c = 0; c < N_COLS; c++) row[c] = NAN;
        char *save = NULL;
        for (char *tok = strtok_r(line, "\t", &save); tok; tok = strtok_r(NULL, "\t", &save), k++) {
            if (k >= 64) {
                st = cli_error("%s:%zu: too many columns", path, lineno);
                break;
            }
            if (n_fields == 0) {
                where[k] = -1;
                for (int c = 0; c < N_COLS; c++)
                    if (!strcmp(tok, names[c])) where[k] = c;
                continue;
            }
            char *end;
            double v = strtod(tok, &end);
            if (*end) {
                st = cli_error("%s:%zu: column %d: not a number: '%s'", path, lineno, k + 1, tok);
                break;
            }
            if (k < n_fields && where[k] >= 0) row[where[k]] = v;
        }
        if (st) break;
        if (n_fields == 0) {
            n_fields = k;
            int have_epoch = 0;
            for (int i = 0; i < k; i++) have_epoch |= where[i] == C_EPOCH;
            if (!have_epoch) st = cli_error("%s:%zu: the header has no 'epoch' column", path, lineno);
            continue;
        }
        if (k != n_fields)
            st = cli_error("%s:%zu: %d columns, the header has %d", path, lineno, k, n_fields);
        else if (!isfinite(row[C_EPOCH]))
            st = cli_error("%s:%zu: no epoch number", path, lineno);
        else if (table_push(t, row))
            st = cli_error("out of memory");
    }
    if (st == CLI_OK && ferror(f)) st = cli_error("cannot read '%s'", path);
    if (st == CLI_OK && t->n == 0) st = cli_error("%s: no epochs to plot", path);
    free(line);
    fclose(f);
    return st;
}

/* Tick spacing of 1, 2 or 5 times a power of ten giving about n ticks. */
static double nice_step(double span, int n) {
    double raw = span / n, p = pow(10, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

typedef struct axis {
    double lo, hi, step;
} axis;

/* An axis over [lo, hi] widened to whole ticks; a single value gets room. */
static axis make_axis(double lo, double hi, int n, int integer) {
    if (!(hi > lo)) {
        lo -= integer ? 1 : fabs(lo) * 0.1 + 0.1;
        hi += integer ? 1 : fabs(hi) * 0.1 + 0.1;
    }
    axis a;
    a.step = nice_step(hi - lo, n);
    if (integer && a.step < 1) a.step = 1;
    a.lo = floor(lo / a.step + 1e-9) * a.step;
    a.hi = ceil(hi / a.step - 1e-9) * a.step;
    return a;
}

static double map(const axis *a, double v, double p0, double p1) {
    return p0 + (v - a->lo) / (a->hi - a->lo) * (p1 - p0);
}

static void xml_text(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default:
            if ((unsigned char)*s >= 0x20) fputc(*s, f);
        }
    }
}

/* One series as polylines broken where values are missing, plus dots. */
static void series(FILE *f, const table *t, int col, const axis *ax, const axis *ay,
                   const char *color, const char *dash) {
    int open = 0;
    for (size_t i = 0; i <= t->n; i++) {
        int ok = i < t->n && isfinite(t->v[col][i]);
        if (ok && !open) {
            fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", color,
                    dash);
            open = 1;
        }
        if (ok)
            fprintf(f, "%.2f,%.2f ", map(ax, t->v[C_EPOCH][i], LEFT, W - RIGHT),
                    map(ay, t->v[col][i], H - BOTTOM, TOP));
        if (!ok && open) {
            fputs("\"/>\n", f);
            open = 0;
        }
    }
    if (t->n <= 100)
        for (size_t i = 0; i < t->n; i++)
            if (isfinite(t->v[col][i]))
                fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3\" fill=\"%s\"/>\n",
                        map(ax, t->v[C_EPOCH][i], LEFT, W - RIGHT),
                        map(ay, t->v[col][i], H - BOTTOM, TOP), color);
}

static int range(const table *t, int col, double *lo, double *hi) {
    int any = 0;
    for (size_t i = 0; i < t->n; i++) {
        double v = t->v[col][i];
        if (!isfinite(v)) continue;
        if (!any || v < *lo) *lo = v;
        if (!any || v > *hi) *hi = v;
        any = 1;
    }
    return any;
}

static void write_svg(FILE *f, const table *t, const char *title) {
    double xlo = 0, xhi = 0, llo = 0, lhi = 0, a = 0, b = 0, slo = 0, shi = 0;
    range(t, C_EPOCH, &xlo, &xhi);
    int has_train = range(t, C_TRAIN, &llo, &lhi);
    int has_val = range(t, C_VAL, &a, &b);
    if (has_val && has_train) {
        llo = fmin(llo, a);
        lhi = fmax(lhi, b);
    } else if (has_val) {
        llo = a;
        lhi = b;
    }
    int sec = range(t, C_ACC, &slo, &shi) ? C_ACC : range(t, C_AUC, &slo, &shi) ? C_AUC : -1;
    axis ax = make_axis(xlo, xhi, 8, 1);
    axis ay = make_axis(has_train || has_val ? llo : 0, has_train || has_val ? lhi : 1, 6, 0);
    /* accuracy on its natural [0, 1]; an AUC near 1 needs its own range */
    axis as = sec == C_ACC ? (axis){0, 1, 0.2} : make_axis(slo, fmin(shi, 1.0), 6, 0);

    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
               "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n",
            W, H, W, H, W, H);
    fprintf(f, "<text x=\"%d\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">", W / 2);
    xml_text(f, title);
    fputs("</text>\n", f);
    /* grid and ticks */
    fputs("<g stroke=\"#dddddd\" stroke-width=\"1\">\n", f);
    for (double v = ay.lo; v <= ay.hi + ay.step * 1e-6; v += ay.step)
        fprintf(f, "<line x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\"/>\n", LEFT,
                map(&ay, v, H - BOTTOM, TOP), W - RIGHT, map(&ay, v, H - BOTTOM, TOP));
    for (double v = ax.lo; v <= ax.hi + ax.step * 1e-6; v += ax.step)
        fprintf(f, "<line x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%d\"/>\n",
                map(&ax, v, LEFT, W - RIGHT), TOP, map(&ax, v, LEFT, W - RIGHT), H - BOTTOM);
    fputs("</g>\n<g text-anchor=\"middle\">\n", f);
    for (double v = ax.lo; v <= ax.hi + ax.step * 1e-6; v += ax.step)
        fprintf(f, "<text x=\"%.2f\" y=\"%d\">%.6g</text>\n", map(&ax, v, LEFT, W - RIGHT),
                H - BOTTOM + 18, fabs(v) < ax.step * 1e-9 ? 0.0 : v);
    fputs("</g>\n<g text-anchor=\"end\">\n", f);
    for (double v = ay.lo; v <= ay.hi + ay.step * 1e-6; v += ay.step)
        fprintf(f, "<text x=\"%d\" y=\"%.2f\">%.6g</text>\n", LEFT - 6,
                map(&ay, v, H - BOTTOM, TOP) + 4, fabs(v) < ay.step * 1e-9 ? 0.0 : v);
    fputs("</g>\n", f);
    if (sec >= 0) {
        fputs("<g text-anchor=\"start\">\n", f);
        for (double v = as.lo; v <= as.hi + as.step * 1e-6; v += as.step)
            fprintf(f, "<text x=\"%d\" y=\"%.2f\">%.6g</text>\n", W - RIGHT + 6,
                    map(&as, v, H - BOTTOM, TOP) + 4, fabs(v) < as.step * 1e-9 ? 0.0 : v);
        fputs("</g>\n", f);
    }
    /* frame and axis labels */
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"black\"/>\n",
            LEFT, TOP, W - LEFT - RIGHT, H - TOP - BOTTOM);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">epoch</text>\n",
            (LEFT + W - RIGHT) / 2, H - 18);
    fprintf(f, "<text x=\"20\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(-90 20 %d)\">"
               "loss</text>\n", (TOP + H - BOTTOM) / 2, (TOP + H - BOTTOM) / 2);
    if (sec >= 0)
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(90 %d %d)\">"
                   "%s</text>\n", W - 24, (TOP + H - BOTTOM) / 2, W - 24, (TOP + H - BOTTOM) / 2,
                sec == C_ACC ? "validation accuracy" : "validation AUC");
    /* curves */
    if (has_train) series(f, t, C_TRAIN, &ax, &ay, "#1f77b4", "");
    if (has_val) series(f, t, C_VAL, &ax, &ay, "#ff7f0e", "");
    if (sec >= 0) series(f, t, sec, &ax, &as, "#2ca02c", " stroke-dasharray=\"6 4\"");
    /* legend, above the frame */
    struct { int on; const char *color, *label; } legend[] = {
        {has_train, "#1f77b4", "train loss"},
        {has_val, "#ff7f0e", "validation loss"},
        {sec >= 0, "#2ca02c", sec == C_ACC ? "validation accuracy (right)" : "validation AUC (right)"},
    };
    int x = LEFT;
    for (size_t i = 0; i < sizeof legend / sizeof *legend; i++) {
        if (!legend[i].on) continue;
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"/>\n"
                   "<text x=\"%d\" y=\"%d\">%s</text>\n",
                x, TOP - 14, x + 24, TOP - 14, legend[i].color, x + 30, TOP - 10, legend[i].label);
        x += 60 + 7 * (int)strlen(legend[i].label);
    }
    fputs("</svg>\n", f);
}

int cmd_plot(int argc, char **argv) {
    static const cli_opt opts[] = {{"output", 'o', 1}};
    const char *opt[1], *pos[1];
    size_t n_pos;
    int st = cli_parse_args("plot", argc, argv, opts, 1, opt, pos, 1, &n_pos);
    if (st < 0) {
        fputs(help, stdout);
        return CLI_OK;
    }
    if (st) return st;
    if (n_pos != 1) return cli_usage_error("plot", "expected one metrics log (METRICS.tsv)");
    table t = {0};
    if ((st = read_log(pos[0], &t))) {
        table_free(&t);
        return st;
    }
    char *out = opt[0] ? strdup(opt[0]) : cli_sibling(pos[0], ".svg");
    char *title = cli_stem(pos[0]);
    FILE *f = out && title ? fopen(out, "w") : NULL;
    if (!out || !title) {
        st = cli_error("out of memory");
    } else if (!f) {
        st = cli_error("cannot write '%s': %s", out, strerror(errno));
    } else {
        write_svg(f, &t, title);
        if (ferror(f) | fclose(f)) st = cli_error("cannot write '%s'", out);
        else printf("wrote %s (%zu epochs)\n", out, t.n);
    }
    free(out);
    free(title);
    table_free(&t);
    return st;
}
