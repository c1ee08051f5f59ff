/*
 * plot — a chart as a PNG: two axes with ticks and their names, series of
 * points drawn as lines and markers, labels beside points, a legend. The
 * caller says what to draw; plot chooses the ranges, the ticks and where
 * everything goes (plot_where says where a point lands, so that a test can
 * look for it). Drawn with cairo; nothing else is written.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/must-check.h"

enum plot_scale {
        PLOT_LINEAR, /* from 0, or below it if a value is */
        PLOT_FIT,    /* linear over the values' own range: small differences show */
        PLOT_LOG,    /* whole decades; values below the lowest sit on the axis */
        PLOT_DAYS,   /* days since 1970, ticked by date (MM-DD) */
};

enum plot_marker {
        PLOT_NONE,
        PLOT_DOT,  /* a filled disc */
        PLOT_RING, /* a circle around the point, for what a dot already marks */
};

struct plot_series {
        const char *name; /* in the legend; NULL: not there */
        const double *x, *y;
        size_t n;
        uint32_t rgb; /* 0xRRGGBB */
        bool line;    /* the points joined, in their order */
        enum plot_marker marker;
        /* written beside each point (NULL ones not), or NULL; a label that would cover
         * one written before it, from an earlier series or point, is left out */
        const char *const *labels;
};

struct plot_chart {
        int width, height; /* pixels */
        const char *title, *x_label, *y_label;
        enum plot_scale x_scale, y_scale; /* y: not PLOT_DAYS */
        const struct plot_series *series; /* borrowed; none: the axes alone */
        size_t n_series;
};

/*
 * Writes the chart to path as a PNG, first to a temporary name beside it,
 * then renamed: path is never left half-written. Returns 0, -EINVAL for a
 * chart it cannot draw (too small, a scale on the wrong axis, a value that
 * is not finite), -ENOMEM, or the errno of the failed write.
 */
MUST_CHECK int plot_png(const struct plot_chart *chart, const char *path);

/* Where (x, y) lands in the chart's picture, in pixels from its top left.
 * Returns 0, or -EINVAL as plot_png would. */
MUST_CHECK int plot_where(const struct plot_chart *chart, double x, double y, double *px,
                          double *py);

/* Lets go of what cairo and fontconfig keep for the process's lifetime (the fonts'
 * caches): for the end of a program that drew charts, so that a leak checker sees
 * nothing left. No chart may be drawn after it. */
void plot_fini(void);

/* The i-th of a set of colours told apart easily (it repeats after 10). */
uint32_t plot_color(size_t i);

/* A colour along a ramp from orange (t = 0) through pink and purple to teal (1),
 * none of plot_color's 0, 2, 3 and 7: shades for things in an order. */
uint32_t plot_ramp(double t);
