/*
 * The registry: a list of families, each with its label values and a fixed
 * array of series allocated at registration. Updates are relaxed atomics on
 * those arrays and never take the lock; the lock only orders registration,
 * detaching callbacks and rendering.
 *
 * Counters are 64-bit integers. Gauges and histogram sums are doubles kept
 * as their bit patterns in 64-bit atomics and updated by compare-and-swap.
 * A histogram keeps one (non-cumulative) count per bucket; rendering sums
 * them, so _count always equals the +Inf bucket even while observations
 * race with a scrape.
 */
#include "metrics/metrics.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"

enum kind { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM, KIND_GAUGE_FN, KIND_COLLECT };

struct family {
        enum kind kind;
        const char *type; /* "counter", "gauge", "histogram" */
        char *name, *help;
        size_t n_labels;
        char **label_names;
        char ***label_values; /* per label, NULL-terminated */
        size_t *n_values;     /* per label */
        size_t n_series;      /* the product of n_values (1 without labels) */
        struct family *next;
        struct metrics *registry;
};

struct metrics_counter {
        struct family f;
        _Atomic uint64_t *v;
};

struct metrics_gauge {
        struct family f;
        _Atomic uint64_t *bits;
};

struct metrics_histogram {
        struct family f;
        size_t n_bounds;
        double *bounds;
        _Atomic uint64_t *buckets;  /* n_series * (n_bounds + 1), the last is +Inf */
        _Atomic uint64_t *sum_bits; /* n_series */
};

struct metrics_fn {
        struct family f;
        metrics_value_fn *value;
        metrics_collect_fn *collect;
        void *userdata;
};

struct metrics {
        pthread_mutex_t lock;
        struct family *first, *last;
};

/* ---- small helpers ---- */

static uint64_t bits_of(double d) {
        uint64_t u;
        memcpy(&u, &d, sizeof(u));
        return u;
}

static double double_of(uint64_t u) {
        double d;
        memcpy(&d, &u, sizeof(d));
        return d;
}

static void atomic_add_double(_Atomic uint64_t *p, double delta) {
        uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
        while (!atomic_compare_exchange_weak_explicit(p, &old, bits_of(double_of(old) + delta),
                                                      memory_order_relaxed, memory_order_relaxed))
                ;
}

const double metrics_buckets_request[METRICS_N_BUCKETS_REQUEST] = {
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10
};

const double metrics_buckets_fast[METRICS_N_BUCKETS_FAST] = { 1e-6,   2.5e-6, 5e-6,   1e-5,
                                                              2.5e-5, 5e-5,   1e-4,   2.5e-4,
                                                              5e-4,   1e-3,   2.5e-3, 1e-2 };

double metrics_now(void) {
        return clock_mono_s();
}

/* A growing string with a sticky failure: check once at the end. */
struct buf {
        char *p;
        size_t len, cap;
        bool failed;
};

static void buf_put(struct buf *b, const char *s, size_t n) {
        if (b->failed)
                return;
        if (b->len + n + 1 > b->cap) {
                size_t cap = b->cap ? b->cap : 4096;
                char *p;
                while (cap < b->len + n + 1)
                        cap *= 2;
                p = realloc(b->p, cap);
                if (!p) {
                        b->failed = true;
                        return;
                }
                b->p = p;
                b->cap = cap;
        }
        memcpy(b->p + b->len, s, n);
        b->len += n;
        b->p[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s) {
        buf_put(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void buf_printf(struct buf *b, const char *fmt, ...) {
        char tmp[128];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t)n >= sizeof(tmp))
                b->failed = true;
        else
                buf_put(b, tmp, (size_t)n);
}

/* The shortest text that reads back as the same double, as Prometheus writes them. */
static void format_double(char out[32], double v) {
        if (isnan(v)) {
                strcpy(out, "NaN");
                return;
        }
        if (isinf(v)) {
                strcpy(out, v > 0 ? "+Inf" : "-Inf");
                return;
        }
        if (v == floor(v) && fabs(v) < 1e15) {
                snprintf(out, 32, "%.0f", v); /* whole numbers read as such: 1000000, not 1e+06 */
                return;
        }
        for (int precision = 1; precision <= 17; precision++) {
                snprintf(out, 32, "%.*g", precision, v);
                if (strtod(out, NULL) == v)
                        return;
        }
}

static void buf_double(struct buf *b, double v) {
        char text[32];
        format_double(text, v);
        buf_str(b, text);
}

/* Length of the valid UTF-8 sequence at s (1 to 4), or 0 when it is not one. */
static size_t utf8_len(const unsigned char *s) {
        if (s[0] < 0x80)
                return 1;
        if (s[0] >= 0xc2 && s[0] <= 0xdf)
                return (s[1] & 0xc0) == 0x80 ? 2 : 0;
        if (s[0] >= 0xe0 && s[0] <= 0xef) {
                if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
                        return 0;
                if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f))
                        return 0; /* overlong, surrogate */
                return 3;
        }
        if (s[0] >= 0xf0 && s[0] <= 0xf4) {
                if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
                        return 0;
                if ((s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))
                        return 0;
                return 4;
        }
        return 0;
}

static bool utf8_valid(const char *s) {
        for (const unsigned char *p = (const unsigned char *)s; *p;) {
                size_t n = utf8_len(p);
                if (!n)
                        return false;
                p += n;
        }
        return true;
}

/*
 * Escapes for the text format: in label values \ " and newline, in help
 * text \ and newline. Bytes that are not UTF-8 become U+FFFD.
 */
static void buf_escaped(struct buf *b, const char *s, bool quote) {
        const unsigned char *p = (const unsigned char *)s;
        while (*p) {
                size_t n = utf8_len(p);
                if (*p == '\\')
                        buf_put(b, "\\\\", 2);
                else if (*p == '\n')
                        buf_put(b, "\\n", 2);
                else if (*p == '"' && quote)
                        buf_put(b, "\\\"", 2);
                else if (n == 0)
                        buf_put(b, "\xef\xbf\xbd", 3);
                else
                        buf_put(b, (const char *)p, n);
                p += n ? n : 1;
        }
}

/* ---- names ---- */

static bool name_valid(const char *s, bool metric) {
        if (!s || !*s)
                return false;
        for (size_t i = 0; s[i]; i++) {
                char c = s[i];
                bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                          (metric && c == ':') || (i > 0 && c >= '0' && c <= '9');
                if (!ok)
                        return false;
        }
        return metric || strncmp(s, "__", 2) != 0;
}

/* Whether `name` is a sample name family `f` writes. */
static bool family_uses(const struct family *f, const char *name) {
        size_t n = strlen(f->name);
        if (!strcmp(f->name, name))
                return true;
        if (f->kind != KIND_HISTOGRAM || strncmp(name, f->name, n) != 0)
                return false;
        return !strcmp(name + n, "_bucket") || !strcmp(name + n, "_sum") ||
               !strcmp(name + n, "_count");
}

/* Under the lock: whether a sample name of a new family would be another's. */
static bool name_taken(const struct metrics *m, const char *name, enum kind kind) {
        static const char *const suffixes[] = { "", "_bucket", "_sum", "_count" };
        size_t n_suffixes = kind == KIND_HISTOGRAM ? 4 : 1;
        char sample[256];

        for (const struct family *f = m->first; f; f = f->next) {
                for (size_t i = 0; i < n_suffixes; i++) {
                        snprintf(sample, sizeof(sample), "%s%s", name, suffixes[i]);
                        if (family_uses(f, sample))
                                return true;
                }
        }
        return false;
}

/* ---- families ---- */

static void family_fini(struct family *f) {
        free(f->name);
        free(f->help);
        for (size_t i = 0; i < f->n_labels; i++) {
                free(f->label_names ? f->label_names[i] : NULL);
                if (f->label_values && f->label_values[i]) {
                        for (char **v = f->label_values[i]; *v; v++)
                                free(*v);
                        free(f->label_values[i]);
                }
        }
        free(f->label_names);
        free(f->label_values);
        free(f->n_values);
}

static void family_free(struct family *f) {
        if (!f)
                return;
        family_fini(f);
        switch (f->kind) {
        case KIND_COUNTER:
                free(((struct metrics_counter *)f)->v);
                break;
        case KIND_GAUGE:
                free(((struct metrics_gauge *)f)->bits);
                break;
        case KIND_HISTOGRAM: {
                struct metrics_histogram *h = (struct metrics_histogram *)f;
                free(h->bounds);
                free(h->buckets);
                free(h->sum_bits);
                break;
        }
        case KIND_GAUGE_FN:
        case KIND_COLLECT:
                break;
        }
        free(f);
}

/*
 * Fills the parts every family has. `labels` declares names and values
 * (values NULL: the callback kinds, which name labels only). Returns 0,
 * -EINVAL or -ENOMEM; on failure family_free() cleans up.
 */
static int family_init(struct family *f, enum kind kind, const char *type, const char *name,
                       const char *help, const struct metrics_label *labels,
                       const char *const *label_names) {
        size_t n = 0;

        f->kind = kind;
        f->type = type;
        f->n_series = 1;
        if (!name_valid(name, true) || strlen(name) > 200 || !help || !utf8_valid(help))
                return -EINVAL;
        f->name = strdup(name);
        f->help = strdup(help);
        if (!f->name || !f->help)
                return -ENOMEM;

        if (labels)
                while (labels[n].name)
                        n++;
        else if (label_names)
                while (label_names[n])
                        n++;
        if (n == 0)
                return 0;
        f->label_names = calloc(n, sizeof(*f->label_names));
        f->label_values = calloc(n, sizeof(*f->label_values));
        f->n_values = calloc(n, sizeof(*f->n_values));
        if (!f->label_names || !f->label_values || !f->n_values)
                return -ENOMEM;
        f->n_labels = n;
        for (size_t i = 0; i < n; i++) {
                const char *label = labels ? labels[i].name : label_names[i];
                if (!name_valid(label, false) || (kind == KIND_HISTOGRAM && !strcmp(label, "le")))
                        return -EINVAL;
                for (size_t j = 0; j < i; j++)
                        if (!strcmp(f->label_names[j], label))
                                return -EINVAL;
                f->label_names[i] = strdup(label);
                if (!f->label_names[i])
                        return -ENOMEM;
                if (!labels)
                        continue;

                {
                        const char *const *values = labels[i].values;
                        size_t k = 0;
                        while (values && values[k])
                                k++;
                        if (k == 0)
                                return -EINVAL;
                        f->label_values[i] = calloc(k + 1, sizeof(char *));
                        if (!f->label_values[i])
                                return -ENOMEM;
                        for (size_t j = 0; j < k; j++) {
                                if (!utf8_valid(values[j]))
                                        return -EINVAL;
                                for (size_t l = 0; l < j; l++)
                                        if (!strcmp(values[l], values[j]))
                                                return -EINVAL;
                                f->label_values[i][j] = strdup(values[j]);
                                if (!f->label_values[i][j])
                                        return -ENOMEM;
                        }
                        f->n_values[i] = k;
                        if (f->n_series > SIZE_MAX / k / 64)
                                return -EINVAL;
                        f->n_series *= k;
                }
        }
        if (labels && f->n_series > 100000)
                return -EINVAL; /* a combinatorial mistake, not a metric */
        return 0;
}

static bool strings_same(char *const *a, char *const *b, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(a[i], b[i]) != 0)
                        return false;
        return true;
}

/* Whether two families are the same definition: kind, name, help, labels, buckets. */
static bool family_same(const struct family *a, const struct family *b) {
        if (a->kind != b->kind || strcmp(a->type, b->type) || strcmp(a->name, b->name) ||
            strcmp(a->help, b->help) || a->n_labels != b->n_labels ||
            !strings_same(a->label_names, b->label_names, a->n_labels))
                return false;
        for (size_t i = 0; i < a->n_labels; i++) {
                bool a_has = a->label_values[i], b_has = b->label_values[i];
                if (a_has != b_has || a->n_values[i] != b->n_values[i] ||
                    (a_has &&
                     !strings_same(a->label_values[i], b->label_values[i], a->n_values[i])))
                        return false;
        }
        if (a->kind == KIND_HISTOGRAM) {
                const struct metrics_histogram *ha = (const void *)a, *hb = (const void *)b;
                if (ha->n_bounds != hb->n_bounds ||
                    memcmp(ha->bounds, hb->bounds, ha->n_bounds * sizeof(double)) != 0)
                        return false;
        }
        return true;
}

/*
 * Appends `f` under the lock and sets *added to it. Registering the same
 * definition again (a component that restarts, two that share a family)
 * frees `f` and hands back the one registered first; a callback family can
 * be registered again only once detached, and takes the new callback. Any
 * other use of a taken name is -EEXIST (and frees `f`).
 */
static int family_add(struct metrics *m, struct family *f, struct family **added) {
        struct family *existing = NULL;
        int r = 0;

        pthread_mutex_lock(&m->lock);
        for (struct family *g = m->first; g && !existing; g = g->next)
                if (!strcmp(g->name, f->name))
                        existing = g;
        if (existing && family_same(existing, f)) {
                if (f->kind == KIND_GAUGE_FN || f->kind == KIND_COLLECT) {
                        struct metrics_fn *old = (void *)existing, *new = (void *)f;
                        if (old->value || old->collect) {
                                r = -EEXIST; /* attached: one callback per family */
                        } else {
                                old->value = new->value;
                                old->collect = new->collect;
                                old->userdata = new->userdata;
                        }
                }
                *added = existing;
        } else if (existing || name_taken(m, f->name, f->kind)) {
                r = -EEXIST;
        } else {
                f->registry = m;
                if (m->last)
                        m->last->next = f;
                else
                        m->first = f;
                m->last = f;
                *added = f;
                f = NULL;
        }
        pthread_mutex_unlock(&m->lock);
        if (f)
                family_free(f);
        return r;
}

/* The flat series index for `at`, or SIZE_MAX when outside. */
static size_t series_of(const struct family *f, const size_t *at) {
        size_t index = 0;

        if (f->n_labels == 0)
                return 0;
        if (!at)
                return SIZE_MAX;
        for (size_t i = 0; i < f->n_labels; i++) {
                if (at[i] >= f->n_values[i])
                        return SIZE_MAX;
                index = index * f->n_values[i] + at[i];
        }
        return index;
}

static int family_lookup(const struct family *f, const char *const *values, size_t *at) {
        for (size_t i = 0; i < f->n_labels; i++) {
                size_t j = 0;
                if (!values || !values[i])
                        return -ENOENT;
                while (j < f->n_values[i] && strcmp(f->label_values[i][j], values[i]) != 0)
                        j++;
                if (j == f->n_values[i])
                        return -ENOENT;
                at[i] = j;
        }
        return 0;
}

/* ---- the registry ---- */

int metrics_new(struct metrics **out) {
        struct metrics *m = calloc(1, sizeof(*m));

        if (!m)
                return -ENOMEM;
        pthread_mutex_init(&m->lock, NULL);
        *out = m;
        return 0;
}

struct metrics *metrics_free(struct metrics *m) {
        struct family *f, *next;

        if (!m)
                return NULL;
        for (f = m->first; f; f = next) {
                next = f->next;
                family_free(f);
        }
        pthread_mutex_destroy(&m->lock);
        free(m);
        return NULL;
}

/* ---- counters ---- */

int metrics_counter_register(struct metrics *m, const char *name, const char *help,
                             const struct metrics_label *labels, struct metrics_counter **out) {
        struct metrics_counter *c = calloc(1, sizeof(*c));
        struct family *added = NULL;
        int r;

        if (!c)
                return -ENOMEM;
        r = family_init(&c->f, KIND_COUNTER, "counter", name, help, labels, NULL);
        if (r == 0 && !(c->v = calloc(c->f.n_series, sizeof(*c->v))))
                r = -ENOMEM;
        if (r < 0) {
                family_free(&c->f);
                return r;
        }
        for (size_t i = 0; i < c->f.n_series; i++)
                atomic_init(&c->v[i], 0);
        r = family_add(m, &c->f, &added);
        if (r == 0 && out)
                *out = (struct metrics_counter *)added;
        return r;
}

int metrics_counter_lookup(const struct metrics_counter *c, const char *const *values, size_t *at) {
        return family_lookup(&c->f, values, at);
}

void metrics_counter_add(struct metrics_counter *c, const size_t *at, uint64_t n) {
        size_t i;

        if (!c || (i = series_of(&c->f, at)) == SIZE_MAX)
                return;
        atomic_fetch_add_explicit(&c->v[i], n, memory_order_relaxed);
}

uint64_t metrics_counter_value(const struct metrics_counter *c, const size_t *at) {
        size_t i;

        if (!c || (i = series_of(&c->f, at)) == SIZE_MAX)
                return 0;
        return atomic_load_explicit(&c->v[i], memory_order_relaxed);
}

/* ---- gauges ---- */

int metrics_gauge_register(struct metrics *m, const char *name, const char *help,
                           const struct metrics_label *labels, struct metrics_gauge **out) {
        struct metrics_gauge *g = calloc(1, sizeof(*g));
        struct family *added = NULL;
        int r;

        if (!g)
                return -ENOMEM;
        r = family_init(&g->f, KIND_GAUGE, "gauge", name, help, labels, NULL);
        if (r == 0 && !(g->bits = calloc(g->f.n_series, sizeof(*g->bits))))
                r = -ENOMEM;
        if (r < 0) {
                family_free(&g->f);
                return r;
        }
        for (size_t i = 0; i < g->f.n_series; i++)
                atomic_init(&g->bits[i], bits_of(0.0));
        r = family_add(m, &g->f, &added);
        if (r == 0 && out)
                *out = (struct metrics_gauge *)added;
        return r;
}

int metrics_gauge_lookup(const struct metrics_gauge *g, const char *const *values, size_t *at) {
        return family_lookup(&g->f, values, at);
}

void metrics_gauge_set(struct metrics_gauge *g, const size_t *at, double value) {
        size_t i;

        if (!g || (i = series_of(&g->f, at)) == SIZE_MAX)
                return;
        atomic_store_explicit(&g->bits[i], bits_of(value), memory_order_relaxed);
}

void metrics_gauge_add(struct metrics_gauge *g, const size_t *at, double delta) {
        size_t i;

        if (!g || (i = series_of(&g->f, at)) == SIZE_MAX)
                return;
        atomic_add_double(&g->bits[i], delta);
}

double metrics_gauge_value(const struct metrics_gauge *g, const size_t *at) {
        size_t i;

        if (!g || (i = series_of(&g->f, at)) == SIZE_MAX)
                return NAN;
        return double_of(atomic_load_explicit(&g->bits[i], memory_order_relaxed));
}

/* ---- histograms ---- */

int metrics_histogram_register(struct metrics *m, const char *name, const char *help,
                               const struct metrics_label *labels, const double *bounds,
                               size_t n_bounds, struct metrics_histogram **out) {
        struct metrics_histogram *h = calloc(1, sizeof(*h));
        struct family *added = NULL;
        size_t n = 0;
        int r;

        if (!h)
                return -ENOMEM;
        r = family_init(&h->f, KIND_HISTOGRAM, "histogram", name, help, labels, NULL);
        if (r == 0 && (n_bounds == 0 || n_bounds > 100 || !bounds))
                r = -EINVAL;
        for (size_t i = 0; r == 0 && i < n_bounds; i++)
                if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
                        r = -EINVAL;
        if (r == 0) {
                n = h->f.n_series * (n_bounds + 1);
                h->n_bounds = n_bounds;
                h->bounds = malloc(n_bounds * sizeof(*h->bounds));
                h->buckets = calloc(n, sizeof(*h->buckets));
                h->sum_bits = calloc(h->f.n_series, sizeof(*h->sum_bits));
                if (!h->bounds || !h->buckets || !h->sum_bits)
                        r = -ENOMEM;
        }
        if (r < 0) {
                family_free(&h->f);
                return r;
        }
        memcpy(h->bounds, bounds, n_bounds * sizeof(*h->bounds));
        for (size_t i = 0; i < n; i++)
                atomic_init(&h->buckets[i], 0);
        for (size_t i = 0; i < h->f.n_series; i++)
                atomic_init(&h->sum_bits[i], bits_of(0.0));
        r = family_add(m, &h->f, &added);
        if (r == 0 && out)
                *out = (struct metrics_histogram *)added;
        return r;
}

int metrics_histogram_lookup(const struct metrics_histogram *h, const char *const *values,
                             size_t *at) {
        return family_lookup(&h->f, values, at);
}

void metrics_histogram_observe(struct metrics_histogram *h, const size_t *at, double value) {
        size_t i, lo = 0, hi;

        if (!h || isnan(value) || (i = series_of(&h->f, at)) == SIZE_MAX)
                return;
        /* The first bucket whose bound is >= value; n_bounds is +Inf. */
        hi = h->n_bounds;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (value <= h->bounds[mid])
                        hi = mid;
                else
                        lo = mid + 1;
        }
        atomic_fetch_add_explicit(&h->buckets[i * (h->n_bounds + 1) + lo], 1, memory_order_relaxed);
        atomic_add_double(&h->sum_bits[i], value);
}

/* ---- computed on scrape ---- */

static int fn_register(struct metrics *m, enum kind kind, const char *type, const char *name,
                       const char *help, const char *const *label_names, metrics_value_fn *value,
                       metrics_collect_fn *collect, void *userdata, struct metrics_fn **out) {
        struct metrics_fn *fn = calloc(1, sizeof(*fn));
        struct family *added = NULL;
        int r;

        if (!fn)
                return -ENOMEM;
        r = family_init(&fn->f, kind, type, name, help, NULL, label_names);
        if (r == 0 && !value && !collect)
                r = -EINVAL;
        if (r < 0) {
                family_free(&fn->f);
                return r;
        }
        fn->value = value;
        fn->collect = collect;
        fn->userdata = userdata;
        r = family_add(m, &fn->f, &added);
        if (r == 0 && out)
                *out = (struct metrics_fn *)added;
        return r;
}

int metrics_gauge_fn(struct metrics *m, const char *name, const char *help, metrics_value_fn *fn,
                     void *userdata, struct metrics_fn **out) {
        return fn_register(m, KIND_GAUGE_FN, "gauge", name, help, NULL, fn, NULL, userdata, out);
}

int metrics_gauge_fn_labelled(struct metrics *m, const char *name, const char *help,
                              const char *const *label_names, metrics_collect_fn *fn,
                              void *userdata, struct metrics_fn **out) {
        return fn_register(m, KIND_COLLECT, "gauge", name, help, label_names, NULL, fn, userdata,
                           out);
}

int metrics_counter_fn_labelled(struct metrics *m, const char *name, const char *help,
                                const char *const *label_names, metrics_collect_fn *fn,
                                void *userdata, struct metrics_fn **out) {
        return fn_register(m, KIND_COLLECT, "counter", name, help, label_names, NULL, fn, userdata,
                           out);
}

void metrics_fn_detach(struct metrics_fn *f) {
        struct metrics *m;

        if (!f)
                return;
        m = f->f.registry;
        pthread_mutex_lock(&m->lock);
        f->value = NULL;
        f->collect = NULL;
        f->userdata = NULL;
        pthread_mutex_unlock(&m->lock);
}

/* ---- rendering ---- */

struct metrics_emitter {
        struct buf *b;
        const struct family *f;
};

/*
 * Writes `{name="value",...` for a series given its label values, plus
 * `extra` (the le of a bucket) if any, and the closing brace; nothing when
 * there are no labels at all.
 */
static void write_labels(struct buf *b, const struct family *f, const char *const *values,
                         const char *extra_name, const char *extra_value) {
        bool any = false;

        for (size_t i = 0; i < f->n_labels; i++) {
                buf_str(b, any ? "," : "{");
                buf_str(b, f->label_names[i]);
                buf_str(b, "=\"");
                buf_escaped(b, values && values[i] ? values[i] : "", true);
                buf_str(b, "\"");
                any = true;
        }
        if (extra_name) {
                buf_str(b, any ? "," : "{");
                buf_str(b, extra_name);
                buf_str(b, "=\"");
                buf_str(b, extra_value);
                buf_str(b, "\"");
                any = true;
        }
        if (any)
                buf_str(b, "}");
}

void metrics_emit(struct metrics_emitter *e, const char *const *label_values, double value) {
        if (!e || isnan(value))
                return;
        buf_str(e->b, e->f->name);
        write_labels(e->b, e->f, label_values, NULL, NULL);
        buf_str(e->b, " ");
        buf_double(e->b, value);
        buf_str(e->b, "\n");
}

/* The label values of flat series `index`, into `values` (n_labels long). */
static void series_values(const struct family *f, size_t index, const char **values) {
        for (size_t i = f->n_labels; i-- > 0;) {
                values[i] = f->label_values[i][index % f->n_values[i]];
                index /= f->n_values[i];
        }
}

static void render_histogram(struct buf *b, const struct metrics_histogram *h,
                             const char **values) {
        const struct family *f = &h->f;

        for (size_t s = 0; s < f->n_series; s++) {
                const _Atomic uint64_t *buckets = &h->buckets[s * (h->n_bounds + 1)];
                uint64_t cumulative = 0;
                char le[32];

                series_values(f, s, values);
                for (size_t i = 0; i <= h->n_bounds; i++) {
                        cumulative += atomic_load_explicit(&buckets[i], memory_order_relaxed);
                        if (i < h->n_bounds)
                                format_double(le, h->bounds[i]);
                        else
                                strcpy(le, "+Inf");
                        buf_str(b, f->name);
                        buf_str(b, "_bucket");
                        write_labels(b, f, values, "le", le);
                        buf_printf(b, " %llu\n", (unsigned long long)cumulative);
                }
                buf_str(b, f->name);
                buf_str(b, "_sum");
                write_labels(b, f, values, NULL, NULL);
                buf_str(b, " ");
                buf_double(b,
                           double_of(atomic_load_explicit(&h->sum_bits[s], memory_order_relaxed)));
                buf_str(b, "\n");
                buf_str(b, f->name);
                buf_str(b, "_count");
                write_labels(b, f, values, NULL, NULL);
                buf_printf(b, " %llu\n", (unsigned long long)cumulative);
        }
}

static void render_family(struct buf *b, const struct family *f, const char **values) {
        buf_str(b, "# HELP ");
        buf_str(b, f->name);
        buf_str(b, " ");
        buf_escaped(b, f->help, false);
        buf_str(b, "\n# TYPE ");
        buf_str(b, f->name);
        buf_str(b, " ");
        buf_str(b, f->type);
        buf_str(b, "\n");

        switch (f->kind) {
        case KIND_COUNTER: {
                const struct metrics_counter *c = (const struct metrics_counter *)f;
                for (size_t s = 0; s < f->n_series; s++) {
                        series_values(f, s, values);
                        buf_str(b, f->name);
                        write_labels(b, f, values, NULL, NULL);
                        buf_printf(b, " %llu\n",
                                   (unsigned long long)atomic_load_explicit(&c->v[s],
                                                                            memory_order_relaxed));
                }
                break;
        }
        case KIND_GAUGE: {
                const struct metrics_gauge *g = (const struct metrics_gauge *)f;
                for (size_t s = 0; s < f->n_series; s++) {
                        series_values(f, s, values);
                        buf_str(b, f->name);
                        write_labels(b, f, values, NULL, NULL);
                        buf_str(b, " ");
                        buf_double(b, double_of(atomic_load_explicit(&g->bits[s],
                                                                     memory_order_relaxed)));
                        buf_str(b, "\n");
                }
                break;
        }
        case KIND_HISTOGRAM:
                render_histogram(b, (const struct metrics_histogram *)f, values);
                break;
        case KIND_GAUGE_FN: {
                const struct metrics_fn *fn = (const struct metrics_fn *)f;
                double v = fn->value ? fn->value(fn->userdata) : NAN;
                if (!isnan(v)) {
                        buf_str(b, f->name);
                        buf_str(b, " ");
                        buf_double(b, v);
                        buf_str(b, "\n");
                }
                break;
        }
        case KIND_COLLECT: {
                const struct metrics_fn *fn = (const struct metrics_fn *)f;
                struct metrics_emitter e = { b, f };
                if (fn->collect)
                        fn->collect(fn->userdata, &e);
                break;
        }
        }
}

int metrics_render(struct metrics *m, char **out, size_t *len) {
        struct buf b = { 0 };
        const char **values = NULL;
        size_t max_labels = 1;

        pthread_mutex_lock(&m->lock);
        for (const struct family *f = m->first; f; f = f->next)
                if (f->n_labels > max_labels)
                        max_labels = f->n_labels;
        values = calloc(max_labels, sizeof(*values));
        if (!values)
                b.failed = true;
        buf_str(&b, ""); /* an empty registry is an empty string, not NULL */
        for (const struct family *f = m->first; f && !b.failed; f = f->next)
                render_family(&b, f, values);
        pthread_mutex_unlock(&m->lock);
        free(values);
        if (b.failed) {
                free(b.p);
                return -ENOMEM;
        }
        *out = b.p;
        if (len)
                *len = b.len;
        return 0;
}
