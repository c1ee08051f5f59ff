/*
 * metrics — a small, thread-safe Prometheus registry: counters, gauges and
 * histograms, each a family whose series are every combination of label
 * values declared when it is registered, and gauges computed when scraped.
 * metrics_render() writes the whole registry in the Prometheus text
 * exposition format 0.0.4.
 *
 * One registry serves a whole process: cmd/ makes it, hands it to the API
 * and the scheduler, and whoever serves HTTP renders it at /metrics (a
 * process without the API can use metrics_server_start()).
 *
 * Ownership: the registry owns every family registered in it, and a copy of
 * every name, help text and label value it was given. The handles the
 * registration functions return are borrowed and stay valid until
 * metrics_free(); do not free them.
 *
 * Threads: registration and rendering take the registry's lock. Updates
 * (metrics_counter_add, metrics_gauge_set, metrics_histogram_observe...)
 * take no lock: they are C11 atomics on storage fixed at registration, safe
 * from any thread, and cheap enough for every request.
 *
 * Series are addressed by `at`: one index per declared label, in declaration
 * order, each an index into that label's values (NULL for a family without
 * labels). An index outside the declared values updates nothing.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* What Prometheus is told it gets. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct metrics;
struct metrics_counter;
struct metrics_gauge;
struct metrics_histogram;
struct metrics_fn;
struct metrics_emitter;
struct metrics_server;

/*
 * A label and the values it may take, declared up front. `values` is
 * NULL-terminated. Families take an array of these ending with { NULL, NULL }
 * (or NULL for no labels); the series are every combination, so keep the
 * product small.
 */
struct metrics_label {
        const char *name;
        const char *const *values;
};

/*
 * Bucket bounds homing uses, in seconds: requests, Kafka deliveries and
 * PostgreSQL transactions (0.5 ms to 10 s), and in-memory work such as a
 * nearest-site query (1 us to 10 ms).
 */
#define METRICS_N_BUCKETS_REQUEST 14
extern const double metrics_buckets_request[METRICS_N_BUCKETS_REQUEST];
#define METRICS_N_BUCKETS_FAST 12
extern const double metrics_buckets_fast[METRICS_N_BUCKETS_FAST];

/* Returns 0 and a new, empty registry in *out, or -ENOMEM. */
int metrics_new(struct metrics **out) __attribute__((warn_unused_result));

/*
 * Frees the registry and everything registered in it; NULL is fine.
 * Returns NULL. Nothing may update or scrape it any more.
 */
struct metrics *metrics_free(struct metrics *m);

/*
 * Registration. `name` is a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*,
 * counters ending in _total by convention), `help` one line of text. Each
 * returns 0 and a borrowed handle in *out (which may be NULL), -EINVAL for
 * a bad name, label or bucket list, -EEXIST when the name (or a histogram's
 * _bucket/_sum/_count) is taken, or -ENOMEM.
 *
 * Registering exactly the same definition again (kind, name, help, labels,
 * values, buckets) is not an error: it hands back the family registered
 * first, so a component that restarts, or two that share a family, simply
 * register what they use.
 */
int metrics_counter_register(struct metrics *m, const char *name, const char *help,
                             const struct metrics_label *labels, struct metrics_counter **out)
        __attribute__((warn_unused_result));

int metrics_gauge_register(struct metrics *m, const char *name, const char *help,
                           const struct metrics_label *labels, struct metrics_gauge **out)
        __attribute__((warn_unused_result));

/*
 * `bounds` are the upper bounds of the buckets, strictly increasing and
 * finite; +Inf is added. They are copied. Values are in base units
 * (seconds, bytes).
 */
int metrics_histogram_register(struct metrics *m, const char *name, const char *help,
                               const struct metrics_label *labels, const double *bounds,
                               size_t n_bounds, struct metrics_histogram **out)
        __attribute__((warn_unused_result));

/*
 * Resolves label values to the indexes `at` takes: `values` has one string
 * per declared label. Returns 0, or -ENOENT when a value was not declared.
 * For the rare caller that has strings; the hot path passes indexes.
 */
int metrics_counter_lookup(const struct metrics_counter *c, const char *const *values, size_t *at);
int metrics_gauge_lookup(const struct metrics_gauge *g, const char *const *values, size_t *at);
int metrics_histogram_lookup(const struct metrics_histogram *h, const char *const *values,
                             size_t *at);

/* Updates: lock-free, from any thread. */
void metrics_counter_add(struct metrics_counter *c, const size_t *at, uint64_t n);
static inline void metrics_counter_inc(struct metrics_counter *c, const size_t *at) {
        metrics_counter_add(c, at, 1);
}
void metrics_gauge_set(struct metrics_gauge *g, const size_t *at, double value);
void metrics_gauge_add(struct metrics_gauge *g, const size_t *at, double delta);
/* NaN is ignored. */
void metrics_histogram_observe(struct metrics_histogram *h, const size_t *at, double value);

/* Reads back (tests, the dashboard's numbers). 0 or NaN for an index outside. */
uint64_t metrics_counter_value(const struct metrics_counter *c, const size_t *at);
double metrics_gauge_value(const struct metrics_gauge *g, const size_t *at);

/* Seconds on the monotonic clock: observe(h, at, metrics_now() - start). */
double metrics_now(void);

/*
 * Values computed when scraped (outbox backlog, consumer lag, queue depth).
 *
 * The callback runs on the scraping thread, with the registry's lock held:
 * it must be thread-safe with respect to its userdata, quick (a scrape
 * waits for it; read a number some loop keeps up to date rather than query
 * a database), and must not call the registry's functions other than
 * metrics_emit(). Prefer a plain gauge set by the owner when it can be.
 */

/* One unlabelled gauge; a NaN result leaves the sample out of the scrape. */
typedef double metrics_value_fn(void *userdata);

/* Emits any number of samples of a labelled family with metrics_emit(). */
typedef void metrics_collect_fn(void *userdata, struct metrics_emitter *e);

int metrics_gauge_fn(struct metrics *m, const char *name, const char *help, metrics_value_fn *fn,
                     void *userdata, struct metrics_fn **out) __attribute__((warn_unused_result));

/*
 * A gauge family whose label values are not known up front (per partition):
 * `label_names` is NULL-terminated, and the callback emits the series that
 * exist now. A value that did not parse as a label is escaped, never refused.
 */
int metrics_gauge_fn_labelled(struct metrics *m, const char *name, const char *help,
                              const char *const *label_names, metrics_collect_fn *fn,
                              void *userdata, struct metrics_fn **out)
        __attribute__((warn_unused_result));

/* The same for a counter computed elsewhere (librdkafka's, /proc's). */
int metrics_counter_fn_labelled(struct metrics *m, const char *name, const char *help,
                                const char *const *label_names, metrics_collect_fn *fn,
                                void *userdata, struct metrics_fn **out)
        __attribute__((warn_unused_result));

/*
 * From a collect callback: one sample. `label_values` has exactly one string
 * per label name (NULL for a family without labels); values are escaped,
 * and bytes that are not UTF-8 become U+FFFD. A NaN value is left out.
 */
void metrics_emit(struct metrics_emitter *e, const char *const *label_values, double value);

/*
 * Stops calling the callback (its family then renders no samples): call it
 * before freeing the userdata if the registry outlives it. When it returns,
 * no call is running or will run. Registering the same family again
 * attaches a new callback. NULL is fine.
 */
void metrics_fn_detach(struct metrics_fn *f);

/*
 * process_start_time_seconds, process_cpu_seconds_total,
 * process_resident_memory_bytes, process_open_fds, process_max_fds and
 * process_threads, from /proc/self, as Prometheus' client libraries name
 * them. Once per registry. Returns 0 or what registration returned.
 */
int metrics_register_process(struct metrics *m) __attribute__((warn_unused_result));

/*
 * Writes the whole registry, families in registration order, in the text
 * format 0.0.4. Returns 0 and a malloc'd, NUL-terminated string in *out
 * (the caller frees it) and its length in *len (which may be NULL), or
 * -ENOMEM.
 */
int metrics_render(struct metrics *m, char **out, size_t *len) __attribute__((warn_unused_result));

/*
 * A minimal HTTP server for a process without the API (homing schedule,
 * homing relay): GET /metrics renders `m` (borrowed: it must outlive the
 * server), GET /healthz answers {"status":"ok"}, anything else 404. It
 * listens on `listen` ("host:port"; port 0 takes a free one) with its own
 * thread. With a `token` (copied), /metrics wants "Authorization: Bearer
 * <token>" (401 otherwise); without one it serves only a loopback address.
 * Returns 0, or -EINVAL / -EPERM / -EADDRINUSE / -EIO with `errbuf` saying
 * why.
 */
int metrics_server_start(struct metrics *m, const char *listen, const char *token,
                         struct metrics_server **out, char *errbuf, size_t errbuf_size)
        __attribute__((warn_unused_result));

/* The port it listens on (useful after port 0). */
int metrics_server_port(const struct metrics_server *s);

/* Stops and frees the server; NULL is fine. Returns NULL. */
struct metrics_server *metrics_server_free(struct metrics_server *s);
