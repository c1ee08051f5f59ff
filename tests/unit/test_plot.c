/* Charts written as PNG and read back with cairo: their size, and markers where the data puts them. */
#include <cairo.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "replay/plot.h"
#include "tap.h"

#define RED 0xd62728
#define BLUE 0x1f77b4

static char dir[] = "/tmp/test-plot-XXXXXX";

static void path_of(char *out, size_t len, const char *name) {
        snprintf(out, len, "%s/%s", dir, name);
}

/* The files in dir, other than . and .. */
static int files_in_dir(void) {
        DIR *d = opendir(dir);
        struct dirent *e;
        int n = 0;
        while (d && (e = readdir(d)))
                n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
        if (d)
                closedir(d);
        return n;
}

/* The colour at (x, y) of a PNG read back, as 0xRRGGBB; 0x1000000 outside it. */
static uint32_t pixel(cairo_surface_t *s, double x, double y) {
        int px = (int)floor(x), py = (int)floor(y);
        if (px < 0 || py < 0 || px >= cairo_image_surface_get_width(s) ||
            py >= cairo_image_surface_get_height(s))
                return 0x1000000;
        return ((const uint32_t *)(cairo_image_surface_get_data(s) +
                                   (size_t)py * (size_t)cairo_image_surface_get_stride(s)))[px] &
               0xffffff;
}

static const double xs[3] = { 1, 2, 3 }, ys[3] = { 10, 25, 30 };
static const double bx[1] = { 2 }, by[1] = { 12 };

static struct plot_chart chart_of(const struct plot_series *s, size_t n) {
        return (struct plot_chart){ 640,         400,         "title", "x, units", "y, units",
                                    PLOT_LINEAR, PLOT_LINEAR, s,       n };
}

/* Each dot is drawn in its colour where plot_where puts its value, and nothing is where
 * no value is; the picture has the size asked for. */
TEST(dots_land_where_their_values_map) {
        const char *labels[3] = { "one", NULL, "three" };
        struct plot_series s[2] = {
                { "red", xs, ys, 3, RED, true, PLOT_DOT, labels },
                { "blue", bx, by, 1, BLUE, false, PLOT_DOT, NULL },
        };
        struct plot_chart c = chart_of(s, 2);
        char path[256];
        cairo_surface_t *png;
        double px[3], py[3], qx, qy;

        path_of(path, sizeof(path), "dots.png");
        CHECK(plot_png(&c, path) == 0);
        png = cairo_image_surface_create_from_png(path);
        CHECK(cairo_surface_status(png) == CAIRO_STATUS_SUCCESS);
        CHECK(cairo_image_surface_get_width(png) == 640);
        CHECK(cairo_image_surface_get_height(png) == 400);
        for (int k = 0; k < 3; k++) {
                CHECK(plot_where(&c, xs[k], ys[k], &px[k], &py[k]) == 0);
                CHECK(pixel(png, px[k], py[k]) == RED);
        }
        CHECK(px[0] < px[1] && px[1] < px[2]); /* x grows to the right */
        CHECK(py[0] > py[1] && py[1] > py[2]); /* y upwards */
        CHECK(plot_where(&c, bx[0], by[0], &qx, &qy) == 0);
        CHECK(pixel(png, qx, qy) == BLUE);
        CHECK(plot_where(&c, 2.5, 15, &qx, &qy) == 0); /* no value there, nor a line */
        CHECK(pixel(png, qx, qy) == 0xffffff);
        cairo_surface_destroy(png);
        CHECK(files_in_dir() == 1); /* no temporary file left beside it */
}

/* Another value, another place: the same chart with one dot moved differs there. */
TEST(a_moved_dot_moves_in_the_picture) {
        double y2[1] = { 28 };
        struct plot_series s[2] = {
                { "red", xs, ys, 3, RED, false, PLOT_DOT, NULL },
                { "blue", bx, y2, 1, BLUE, false, PLOT_DOT, NULL },
        };
        struct plot_chart c = chart_of(s, 2);
        char path[256];
        cairo_surface_t *png;
        double was_x, was_y, now_x, now_y;

        path_of(path, sizeof(path), "moved.png");
        CHECK(plot_png(&c, path) == 0);
        png = cairo_image_surface_create_from_png(path);
        CHECK(plot_where(&c, bx[0], y2[0], &now_x, &now_y) == 0);
        CHECK(plot_where(&c, bx[0], by[0], &was_x, &was_y) == 0);
        CHECK(pixel(png, now_x, now_y) == BLUE);
        CHECK(pixel(png, was_x, was_y) != BLUE);
        cairo_surface_destroy(png);
        unlink(path);
}

/* A log axis puts decades evenly apart, what is under its first decade on it; a day axis
 * puts days evenly apart. */
TEST(log_and_day_axes_space_their_values) {
        const double km[4] = { 0, 1, 10, 100 }, share[4] = { 0.1, 0.4, 0.8, 1 };
        const double day[3] = { 20458, 20459, 20460 }, n[3] = { 4, 0, 7 };
        struct plot_series s = { "cdf", km, share, 4, RED, true, PLOT_NONE, NULL };
        struct plot_series d = { "days", day, n, 3, BLUE, true, PLOT_DOT, NULL };
        struct plot_chart c = { 640, 400, NULL, NULL, NULL, PLOT_LOG, PLOT_LINEAR, &s, 1 };
        struct plot_chart cd = { 640, 400, NULL, NULL, NULL, PLOT_DAYS, PLOT_LINEAR, &d, 1 };
        double x0, x1, x10, x100, y, d0, d1, d2;

        CHECK(plot_where(&c, 0, 0, &x0, &y) == 0);
        CHECK(plot_where(&c, 1, 0, &x1, &y) == 0);
        CHECK(plot_where(&c, 10, 0, &x10, &y) == 0);
        CHECK(plot_where(&c, 100, 0, &x100, &y) == 0);
        CHECK(x0 == x1 && x1 < x10);
        CHECK_NEAR(x10 - x1, x100 - x10, 1e-9);
        CHECK(plot_where(&cd, day[0], 0, &d0, &y) == 0);
        CHECK(plot_where(&cd, day[1], 0, &d1, &y) == 0);
        CHECK(plot_where(&cd, day[2], 0, &d2, &y) == 0);
        CHECK(d0 < d1 && d1 < d2);
        CHECK_NEAR(d1 - d0, d2 - d1, 1e-9);
}

/* No series (a history where nothing happened): the axes alone, still a picture. */
TEST(a_chart_of_no_series_is_its_axes) {
        struct plot_chart c = chart_of(NULL, 0);
        char path[256];
        cairo_surface_t *png;

        path_of(path, sizeof(path), "empty.png");
        CHECK(plot_png(&c, path) == 0);
        png = cairo_image_surface_create_from_png(path);
        CHECK(cairo_surface_status(png) == CAIRO_STATUS_SUCCESS);
        CHECK(cairo_image_surface_get_width(png) == 640);
        cairo_surface_destroy(png);
        unlink(path);
}

/* The ramp runs from orange to teal, a different shade at each of ten steps, and keeps
 * clear of the colours plot_color gives the yardsticks. */
TEST(the_ramp_gives_each_step_its_own_shade) {
        uint32_t c[10];

        CHECK(plot_ramp(0) == 0xff7f0e && plot_ramp(1) == 0x17becf);
        CHECK(plot_ramp(-1) == plot_ramp(0) && plot_ramp(2) == plot_ramp(1));
        for (int k = 0; k < 10; k++) {
                c[k] = plot_ramp(k / 9.0);
                for (int j = 0; j < k; j++)
                        CHECK(c[j] != c[k]);
                CHECK(c[k] != plot_color(0) && c[k] != plot_color(2) && c[k] != plot_color(3) &&
                      c[k] != plot_color(7));
        }
}

/* What cannot be drawn is refused, and no file is made. */
TEST(bad_charts_are_refused) {
        const double bad[1] = { NAN };
        struct plot_series s = { "s", xs, ys, 3, RED, false, PLOT_DOT, NULL };
        struct plot_series nan = { "s", xs, bad, 1, RED, false, PLOT_DOT, NULL };
        struct plot_chart c = chart_of(&s, 1);
        char path[256];
        double x, y;

        path_of(path, sizeof(path), "bad.png");
        c.series = NULL; /* and 1 of them */
        CHECK(plot_png(&c, path) == -EINVAL);
        c = chart_of(&nan, 1);
        CHECK(plot_png(&c, path) == -EINVAL);
        CHECK(plot_where(&c, 1, 1, &x, &y) == -EINVAL);
        c = chart_of(&s, 1);
        c.y_scale = PLOT_DAYS;
        CHECK(plot_png(&c, path) == -EINVAL);
        c = chart_of(&s, 1);
        c.width = 10;
        CHECK(plot_png(&c, path) == -EINVAL);
        CHECK(plot_png(NULL, path) == -EINVAL);
        CHECK(access(path, F_OK) < 0 && errno == ENOENT);
}

/* A path that cannot be written: its errno, and nothing left behind. */
TEST(an_unwritable_path_is_an_error) {
        struct plot_series s = { "s", xs, ys, 3, RED, false, PLOT_DOT, NULL };
        struct plot_chart c = chart_of(&s, 1);
        char path[256], file[256];
        FILE *f;
        int before;

        path_of(path, sizeof(path), "missing/x.png");
        CHECK(plot_png(&c, path) == -ENOENT);
        path_of(file, sizeof(file), "file");
        f = fopen(file, "w");
        CHECK(f != NULL);
        if (f)
                fclose(f);
        before = files_in_dir();
        path_of(path, sizeof(path), "file/x.png");
        CHECK(plot_png(&c, path) == -ENOTDIR);
        CHECK(files_in_dir() == before);
        unlink(file);
}

static void cleanup(void) {
        DIR *d = opendir(dir);
        struct dirent *e;
        char path[512];
        while (d && (e = readdir(d)))
                if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
                        unlink(path);
                }
        if (d)
                closedir(d);
        rmdir(dir);
}

int main(void) {
        static const struct tap_test tests[] = {
                TAP_TEST(dots_land_where_their_values_map),
                TAP_TEST(a_moved_dot_moves_in_the_picture),
                TAP_TEST(log_and_day_axes_space_their_values),
                TAP_TEST(a_chart_of_no_series_is_its_axes),
                TAP_TEST(the_ramp_gives_each_step_its_own_shade),
                TAP_TEST(bad_charts_are_refused),
                TAP_TEST(an_unwritable_path_is_an_error),
        };
        int r;

        if (!mkdtemp(dir)) {
                perror("mkdtemp");
                return 1;
        }
        r = tap_run(tests, sizeof(tests) / sizeof(tests[0]));
        cleanup();
        plot_fini();
        return r;
}
