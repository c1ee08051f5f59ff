/*
 * A chart drawn with cairo and written as a PNG. The frame (where the plot
 * area sits and what range each axis shows) is worked out from the chart
 * alone, once for drawing and once for plot_where, so both always agree.
 * Text uses cairo's toy API: one sans-serif face, enough for labels.
 */
#include "replay/plot.h"

#include <cairo.h>
#include <errno.h>
#include <fontconfig/fontconfig.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MARGIN_LEFT 78
#define MARGIN_TOP 40
#define MARGIN_BOTTOM 56
#define MARGIN_RIGHT 20
#define LEGEND_W 250 /* beside the plot area, when a series has a name */
#define LEGEND_ROW 17
#define FONT 12.0
#define SMALL 10.5
#define MAX_TICKS 64

struct axis {
        enum plot_scale scale;
        double lo, hi;     /* the range shown (for PLOT_LOG: powers of 10) */
        double step;       /* between ticks (PLOT_LOG: a decade) */
        int decimals;      /* of a linear tick's label */
        double p_lo, p_hi; /* the pixels lo and hi land on */
};

struct frame {
        struct axis x, y;
        double left, top, right, bottom; /* the plot area */
        bool legend;
};

static void rgb(cairo_t *cr, uint32_t c) {
        cairo_set_source_rgb(cr, (double)((c >> 16) & 0xff) / 255.0,
                             (double)((c >> 8) & 0xff) / 255.0, (double)(c & 0xff) / 255.0);
}

/* 1, 2 or 5 times a power of 10, at least `raw`. */
static double nice_step(double raw) {
        double p = pow(10, floor(log10(raw))), f = raw / p;
        return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

/* The axis's range from the values lo..hi it must show (lo > hi: none). */
static void axis_fit(struct axis *a, enum plot_scale scale, double lo, double hi) {
        a->scale = scale;
        a->decimals = 0;
        if (scale == PLOT_LOG) {
                /* lo is the smallest value above 0 */
                if (!(lo <= hi) || hi <= 0) {
                        lo = 1;
                        hi = 10;
                }
                a->lo = pow(10, floor(log10(lo)));
                a->hi = pow(10, ceil(log10(hi)));
                if (a->hi <= a->lo)
                        a->hi = a->lo * 10;
                a->step = 10;
                return;
        }
        if (!(lo <= hi)) {
                lo = 0;
                hi = 1;
        }
        if (scale == PLOT_DAYS) {
                /* half a day either side: each day's point stands clear of the border */
                double days = hi - lo + 1;
                a->lo = lo - 0.5;
                a->hi = hi + 0.5;
                a->step = days <= 10 ? 1 : days <= 20 ? 2 : days <= 70 ? 7 : 30;
                return;
        }
        if (scale == PLOT_FIT) {
                double pad = hi > lo ? (hi - lo) * 0.08 : fabs(hi) > 0 ? fabs(hi) * 0.05 : 1;
                lo -= pad;
                hi += pad;
        } else if (lo > 0) {
                lo = 0;
        }
        if (hi <= lo)
                hi = lo + 1;
        a->step = nice_step((hi - lo) / 5);
        a->lo = floor(lo / a->step) * a->step;
        a->hi = ceil(hi / a->step) * a->step;
        if (a->hi <= a->lo)
                a->hi = a->lo + a->step;
        a->decimals = a->step >= 1 ? 0 : (int)ceil(-log10(a->step) - 1e-9);
}

/* Where value v lands on the axis, in pixels (below a log axis's range: on it). */
static double axis_map(const struct axis *a, double v) {
        double t;
        if (a->scale == PLOT_LOG)
                t = v <= a->lo ? 0 : (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo));
        else
                t = (v - a->lo) / (a->hi - a->lo);
        return a->p_lo + t * (a->p_hi - a->p_lo);
}

static bool series_valid(const struct plot_series *s) {
        if (s->n > 0 && (!s->x || !s->y))
                return false;
        for (size_t k = 0; k < s->n; k++)
                if (!isfinite(s->x[k]) || !isfinite(s->y[k]))
                        return false;
        return true;
}

/* The values an axis must show: all of them, or for a log axis those above 0. */
static void extent(const struct plot_chart *c, bool on_x, double *lo, double *hi) {
        enum plot_scale scale = on_x ? c->x_scale : c->y_scale;
        *lo = INFINITY;
        *hi = -INFINITY;
        for (size_t i = 0; i < c->n_series; i++)
                for (size_t k = 0; k < c->series[i].n; k++) {
                        double v = on_x ? c->series[i].x[k] : c->series[i].y[k];
                        if (scale == PLOT_LOG && v <= 0)
                                continue;
                        *lo = v < *lo ? v : *lo;
                        *hi = v > *hi ? v : *hi;
                }
}

static int frame_make(const struct plot_chart *c, struct frame *f) {
        double lo, hi;

        if (!c || c->width < 320 || c->height < 200 || c->width > 8000 || c->height > 8000 ||
            (c->n_series > 0 && !c->series) || c->y_scale == PLOT_DAYS || c->x_scale > PLOT_DAYS ||
            c->y_scale > PLOT_DAYS)
                return -EINVAL;
        f->legend = false;
        for (size_t i = 0; i < c->n_series; i++) {
                if (!series_valid(&c->series[i]))
                        return -EINVAL;
                f->legend = f->legend || c->series[i].name;
        }
        f->left = MARGIN_LEFT;
        f->top = MARGIN_TOP;
        f->right = c->width - MARGIN_RIGHT - (f->legend ? LEGEND_W : 0);
        f->bottom = c->height - MARGIN_BOTTOM;
        if (f->right - f->left < 100)
                return -EINVAL;
        extent(c, true, &lo, &hi);
        axis_fit(&f->x, c->x_scale, lo, hi);
        extent(c, false, &lo, &hi);
        axis_fit(&f->y, c->y_scale, lo, hi);
        f->x.p_lo = f->left;
        f->x.p_hi = f->right;
        f->y.p_lo = f->bottom;
        f->y.p_hi = f->top;
        return 0;
}

int plot_where(const struct plot_chart *chart, double x, double y, double *px, double *py) {
        struct frame f;
        int r = frame_make(chart, &f);
        if (r < 0)
                return r;
        *px = axis_map(&f.x, x);
        *py = axis_map(&f.y, y);
        return 0;
}

void plot_fini(void) {
        cairo_debug_reset_static_data();
        FcFini();
}

uint32_t plot_color(size_t i) {
        /* ten hues apart in lightness and tone: told apart on screen and in print */
        static const uint32_t colors[] = { 0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd,
                                           0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf };
        return colors[i % (sizeof(colors) / sizeof(colors[0]))];
}

uint32_t plot_ramp(double t) {
        static const uint32_t stops[] = { 0xff7f0e, 0xe377c2, 0x9467bd, 0x17becf };
        const size_t last = sizeof(stops) / sizeof(stops[0]) - 1;
        double at = (t < 0 ? 0 : t > 1 ? 1 : t) * (double)last, f;
        size_t k = (size_t)at < last ? (size_t)at : last - 1;
        uint32_t c = 0;

        f = at - (double)k;
        for (int shift = 16; shift >= 0; shift -= 8) {
                double a = (double)((stops[k] >> shift) & 0xff);
                double b = (double)((stops[k + 1] >> shift) & 0xff);
                c |= (uint32_t)lround(a + (b - a) * f) << shift;
        }
        return c;
}

/* ---- drawing ------------------------------------------------------------ */

enum align { LEFT, CENTER, RIGHT };

/* Text whose baseline's `align` point is (x, y). */
static void text_at(cairo_t *cr, double x, double y, enum align align, const char *s) {
        cairo_text_extents_t e;
        cairo_text_extents(cr, s, &e);
        cairo_move_to(cr,
                      align == LEFT     ? x
                      : align == CENTER ? x - e.x_advance / 2
                                        : x - e.x_advance,
                      y);
        cairo_show_text(cr, s);
}

static void tick_label(const struct axis *a, double v, char *buf, size_t len) {
        if (a->scale == PLOT_DAYS) {
                time_t t = (time_t)(v * 86400.0);
                struct tm tm;
                gmtime_r(&t, &tm);
                strftime(buf, len, "%m-%d", &tm);
        } else if (a->scale == PLOT_LOG) {
                snprintf(buf, len, "%g", v);
        } else {
                snprintf(buf, len, "%.*f", a->decimals, fabs(v) < a->step / 2 ? 0.0 : v);
        }
}

/* The tick values of an axis, at most MAX_TICKS. */
static size_t ticks(const struct axis *a, double *out) {
        size_t n = 0;
        if (a->scale == PLOT_LOG) {
                for (double v = a->lo; v <= a->hi * 1.0001 && n < MAX_TICKS; v *= 10)
                        out[n++] = v;
        } else if (a->scale == PLOT_DAYS) {
                for (double v = ceil(a->lo); v <= a->hi && n < MAX_TICKS; v += a->step)
                        out[n++] = v;
        } else {
                for (double k = 0; a->lo + k * a->step <= a->hi + a->step / 1000 && n < MAX_TICKS;
                     k++)
                        out[n++] = a->lo + k * a->step;
        }
        return n;
}

static void draw_axes(cairo_t *cr, const struct plot_chart *c, const struct frame *f) {
        double t[MAX_TICKS];
        char label[32];
        size_t n;

        cairo_set_line_width(cr, 1);
        /* grid lines first, under everything */
        rgb(cr, 0xe4e4e4);
        n = ticks(&f->x, t);
        for (size_t k = 0; k < n; k++) {
                double px = round(axis_map(&f->x, t[k])) + 0.5;
                cairo_move_to(cr, px, f->top);
                cairo_line_to(cr, px, f->bottom);
        }
        n = ticks(&f->y, t);
        for (size_t k = 0; k < n; k++) {
                double py = round(axis_map(&f->y, t[k])) + 0.5;
                cairo_move_to(cr, f->left, py);
                cairo_line_to(cr, f->right, py);
        }
        cairo_stroke(cr);

        rgb(cr, 0x222222);
        cairo_rectangle(cr, f->left + 0.5, f->top + 0.5, f->right - f->left, f->bottom - f->top);
        cairo_stroke(cr);
        cairo_set_font_size(cr, SMALL);
        n = ticks(&f->x, t);
        for (size_t k = 0; k < n; k++) {
                double px = round(axis_map(&f->x, t[k])) + 0.5;
                cairo_move_to(cr, px, f->bottom);
                cairo_line_to(cr, px, f->bottom + 5);
                cairo_stroke(cr);
                tick_label(&f->x, t[k], label, sizeof(label));
                text_at(cr, px, f->bottom + 18, CENTER, label);
        }
        n = ticks(&f->y, t);
        for (size_t k = 0; k < n; k++) {
                double py = round(axis_map(&f->y, t[k])) + 0.5;
                cairo_move_to(cr, f->left - 5, py);
                cairo_line_to(cr, f->left, py);
                cairo_stroke(cr);
                tick_label(&f->y, t[k], label, sizeof(label));
                text_at(cr, f->left - 8, py + 4, RIGHT, label);
        }
        cairo_set_font_size(cr, FONT);
        if (c->x_label)
                text_at(cr, (f->left + f->right) / 2, c->height - 14, CENTER, c->x_label);
        if (c->y_label) {
                cairo_save(cr);
                cairo_translate(cr, 18, (f->top + f->bottom) / 2);
                cairo_rotate(cr, -M_PI / 2);
                text_at(cr, 0, 0, CENTER, c->y_label);
                cairo_restore(cr);
        }
        if (c->title) {
                cairo_save(cr);
                cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                                       CAIRO_FONT_WEIGHT_BOLD);
                cairo_set_font_size(cr, 15);
                text_at(cr, (f->left + f->right) / 2, 26, CENTER, c->title);
                cairo_restore(cr);
        }
}

static void marker(cairo_t *cr, enum plot_marker m, double px, double py) {
        if (m == PLOT_DOT) {
                cairo_arc(cr, px, py, 4.5, 0, 2 * M_PI);
                cairo_fill(cr);
        } else if (m == PLOT_RING) {
                cairo_new_sub_path(cr);
                cairo_arc(cr, px, py, 8, 0, 2 * M_PI);
                cairo_set_line_width(cr, 2);
                cairo_stroke(cr);
        }
}

static void draw_series(cairo_t *cr, const struct plot_series *s, const struct frame *f) {
        rgb(cr, s->rgb);
        if (s->line && s->n > 1) {
                cairo_set_line_width(cr, 2);
                cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
                for (size_t k = 0; k < s->n; k++)
                        cairo_line_to(cr, axis_map(&f->x, s->x[k]), axis_map(&f->y, s->y[k]));
                cairo_stroke(cr);
        }
        for (size_t k = 0; k < s->n; k++)
                marker(cr, s->marker, axis_map(&f->x, s->x[k]), axis_map(&f->y, s->y[k]));
}

#define MAX_LABELS 256

/* The boxes of the labels written so far: a new one covering any is left out. */
struct written {
        size_t n;
        double box[MAX_LABELS][4]; /* x0, y0, x1, y1 */
};

static bool covers(const struct written *w, const double b[4]) {
        for (size_t i = 0; i < w->n; i++)
                if (b[0] < w->box[i][2] && w->box[i][0] < b[2] && b[1] < w->box[i][3] &&
                    w->box[i][1] < b[3])
                        return true;
        return false;
}

/* A label beside the point, at the first of its four corners where it covers no other
 * label and stays in the picture. */
static void label(cairo_t *cr, struct written *w, double px, double py, double right,
                  const char *s) {
        static const double dx[4] = { 9, 9, -9, -9 }, dy[4] = { -7, 15, -7, 15 };
        cairo_text_extents_t e;

        cairo_text_extents(cr, s, &e);
        for (int k = 0; k < 4 && w->n < MAX_LABELS; k++) {
                double x = dx[k] > 0 ? px + dx[k] : px + dx[k] - e.x_advance, y = py + dy[k];
                double b[4] = { x - 2, y - 11, x + e.x_advance + 2, y + 3 };
                if (b[0] < 0 || b[2] > right || b[1] < 0 || covers(w, b))
                        continue;
                memcpy(w->box[w->n++], b, sizeof(b));
                cairo_move_to(cr, x, y);
                cairo_show_text(cr, s);
                return;
        }
}

static void draw_labels(cairo_t *cr, struct written *w, const struct plot_series *s,
                        const struct frame *f) {
        if (!s->labels)
                return;
        cairo_set_font_size(cr, SMALL);
        rgb(cr, 0x222222);
        for (size_t k = 0; k < s->n; k++)
                if (s->labels[k])
                        label(cr, w, axis_map(&f->x, s->x[k]), axis_map(&f->y, s->y[k]),
                              f->right + 8, s->labels[k]);
}

static void draw_legend(cairo_t *cr, const struct plot_chart *c, const struct frame *f) {
        double x = f->right + 16, y = f->top + 8;
        size_t rows = (size_t)((f->bottom - f->top - 8) / LEGEND_ROW), named = 0, shown = 0;

        for (size_t i = 0; i < c->n_series; i++)
                named += c->series[i].name != NULL;
        cairo_save(cr);
        cairo_rectangle(cr, f->right + 8, 0, c->width - f->right - 8, c->height);
        cairo_clip(cr);
        cairo_set_font_size(cr, SMALL);
        for (size_t i = 0; i < c->n_series; i++) {
                const struct plot_series *s = &c->series[i];
                if (!s->name)
                        continue;
                if (shown + 1 == rows && named > rows) {
                        char more[48];
                        snprintf(more, sizeof(more), "and %zu more", named - shown);
                        rgb(cr, 0x222222);
                        text_at(cr, x, y + 4, LEFT, more);
                        break;
                }
                rgb(cr, s->rgb);
                if (s->line || s->marker == PLOT_NONE) {
                        cairo_set_line_width(cr, 2);
                        cairo_move_to(cr, x, y);
                        cairo_line_to(cr, x + 22, y);
                        cairo_stroke(cr);
                }
                marker(cr, s->marker == PLOT_RING ? PLOT_DOT : s->marker, x + 11, y);
                rgb(cr, 0x222222);
                text_at(cr, x + 30, y + 4, LEFT, s->name);
                y += LEGEND_ROW;
                shown++;
        }
        cairo_restore(cr);
}

struct sink {
        FILE *f;
        int err;
};

static cairo_status_t sink_write(void *ctx, const unsigned char *data, unsigned int len) {
        struct sink *s = ctx;
        if (fwrite(data, 1, len, s->f) != len) {
                s->err = errno ? errno : EIO;
                return CAIRO_STATUS_WRITE_ERROR;
        }
        return CAIRO_STATUS_SUCCESS;
}

/* The surface to path, through a temporary file beside it. Returns 0 or a negative errno. */
static int write_png(cairo_surface_t *surface, const char *path) {
        size_t len = strlen(path);
        char *tmp = malloc(len + 8);
        struct sink sink = { 0 };
        mode_t mask;
        int fd, r = 0;

        if (!tmp)
                return -ENOMEM;
        memcpy(tmp, path, len);
        memcpy(tmp + len, ".XXXXXX", 8);
        fd = mkstemp(tmp);
        if (fd < 0) {
                r = -errno;
                free(tmp);
                return r;
        }
        /* mkstemp makes it private; a picture is as readable as any file made here */
        mask = umask(0);
        umask(mask);
        if (fchmod(fd, 0666 & ~mask) < 0 || !(sink.f = fdopen(fd, "wb"))) {
                r = -errno;
                close(fd);
        } else {
                if (cairo_surface_write_to_png_stream(surface, sink_write, &sink) !=
                    CAIRO_STATUS_SUCCESS)
                        r = -(sink.err ? sink.err : EIO);
                if (fclose(sink.f) != 0 && r == 0)
                        r = -errno;
        }
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0)
                unlink(tmp);
        free(tmp);
        return r;
}

int plot_png(const struct plot_chart *chart, const char *path) {
        struct frame f;
        struct written written = { 0 };
        cairo_surface_t *surface;
        cairo_t *cr;
        int r = frame_make(chart, &f);

        if (r < 0)
                return r;
        surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, chart->width, chart->height);
        cr = cairo_create(surface);
        if (cairo_status(cr) != CAIRO_STATUS_SUCCESS) {
                cairo_destroy(cr);
                cairo_surface_destroy(surface);
                return -ENOMEM;
        }
        rgb(cr, 0xffffff);
        cairo_paint(cr);
        cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
        draw_axes(cr, chart, &f);
        /* the series inside the plot area (with room for a marker on its border) */
        cairo_save(cr);
        cairo_rectangle(cr, f.left - 9, f.top - 9, f.right - f.left + 18, f.bottom - f.top + 18);
        cairo_clip(cr);
        for (size_t i = 0; i < chart->n_series; i++)
                draw_series(cr, &chart->series[i], &f);
        cairo_restore(cr);
        for (size_t i = 0; i < chart->n_series; i++)
                draw_labels(cr, &written, &chart->series[i], &f);
        if (f.legend)
                draw_legend(cr, chart, &f);
        r = cairo_status(cr) == CAIRO_STATUS_SUCCESS ? 0 : -ENOMEM;
        cairo_destroy(cr);
        if (r == 0) {
                cairo_surface_flush(surface);
                r = write_png(surface, path);
        }
        cairo_surface_destroy(surface);
        return r;
}
