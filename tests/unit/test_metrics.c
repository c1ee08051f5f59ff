/*
 * metrics: values, label escaping, registration rules, callbacks,
 * concurrent updates, and that what it renders passes `promtool check
 * metrics` (Prometheus' own parser and linter; deploy/install-deps installs
 * it, so a missing promtool is a failure, not a skip).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "metrics/metrics.h"
#include "tap.h"

static const char *const statuses[] = { "202", "400", "503", NULL };
static const struct metrics_label by_status[] = { { "status", statuses }, { NULL, NULL } };

static const char *const outcomes[] = { "move", "stay", NULL };
static const char *const reasons[] = { "closer", "dwell", "cooldown", NULL };
static const struct metrics_label by_outcome_reason[] = { { "outcome", outcomes },
                                                          { "reason", reasons },
                                                          { NULL, NULL } };

static const double latency_bounds[] = { 0.001, 0.01, 0.1, 1 };

/* Whether `text` has `line` as a whole line. */
static int has_line(const char *text, const char *line) {
        size_t n = strlen(line);
        for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
                if (!strncmp(p, line, n) && (p[n] == '\n' || p[n] == '\0'))
                        return 1;
        return 0;
}

static char *render(struct metrics *m) {
        char *text = NULL;
        size_t len = 0;
        if (metrics_render(m, &text, &len) < 0)
                return NULL;
        if (strlen(text) != len) {
                free(text);
                return NULL;
        }
        return text;
}

TEST(counters_count_per_label_value) {
        struct metrics *m = NULL;
        struct metrics_counter *c = NULL, *plain = NULL;
        size_t at[2];
        char *text;

        CHECK(metrics_new(&m) == 0);
        CHECK(metrics_counter_register(m, "homing_requests_total", "Requests by status.", by_status,
                                       &c) == 0);
        CHECK(metrics_counter_register(m, "homing_reports_total", "Reports.", NULL, &plain) == 0);
        metrics_counter_inc(c, (size_t[]){ 0 });
        metrics_counter_add(c, (size_t[]){ 0 }, 4);
        metrics_counter_inc(c, (size_t[]){ 2 });
        metrics_counter_inc(c, (size_t[]){ 3 }); /* not declared: ignored */
        metrics_counter_inc(c, NULL);            /* a labelled family needs at */
        metrics_counter_add(plain, NULL, 7);
        CHECK(metrics_counter_value(c, (size_t[]){ 0 }) == 5);
        CHECK(metrics_counter_value(c, (size_t[]){ 1 }) == 0);
        CHECK(metrics_counter_value(c, (size_t[]){ 2 }) == 1);
        CHECK(metrics_counter_value(plain, NULL) == 7);

        CHECK(metrics_counter_lookup(c, (const char *[]){ "503" }, at) == 0 && at[0] == 2);
        CHECK(metrics_counter_lookup(c, (const char *[]){ "418" }, at) == -ENOENT);

        text = render(m);
        CHECK(text != NULL);
        if (text) {
                CHECK_STR(text, "# HELP homing_requests_total Requests by status.\n"
                                "# TYPE homing_requests_total counter\n"
                                "homing_requests_total{status=\"202\"} 5\n"
                                "homing_requests_total{status=\"400\"} 0\n"
                                "homing_requests_total{status=\"503\"} 1\n"
                                "# HELP homing_reports_total Reports.\n"
                                "# TYPE homing_reports_total counter\n"
                                "homing_reports_total 7\n");
        }
        free(text);
        metrics_free(m);
}

TEST(the_same_definition_twice_is_one_family) {
        struct metrics *m = NULL;
        struct metrics_counter *a = NULL, *b = NULL;
        struct metrics_histogram *h1 = NULL, *h2 = NULL;
        static const double other_bounds[] = { 0.5, 1 };
        char *text;

        CHECK(metrics_new(&m) == 0);
        CHECK(metrics_counter_register(m, "shared_total", "Shared.", by_status, &a) == 0);
        CHECK(metrics_counter_register(m, "shared_total", "Shared.", by_status, &b) == 0);
        CHECK(a == b && a != NULL);
        CHECK(metrics_counter_register(m, "shared_total", "Shared.", by_outcome_reason, NULL) ==
              -EEXIST);
        CHECK(metrics_histogram_register(m, "tx_seconds", "Tx.", NULL, latency_bounds, 4, &h1) ==
              0);
        CHECK(metrics_histogram_register(m, "tx_seconds", "Tx.", NULL, latency_bounds, 4, &h2) ==
              0);
        CHECK(h1 == h2);
        CHECK(metrics_histogram_register(m, "tx_seconds", "Tx.", NULL, other_bounds, 2, NULL) ==
              -EEXIST);
        metrics_counter_inc(a, (size_t[]){ 0 });
        metrics_counter_inc(b, (size_t[]){ 0 });
        CHECK(metrics_counter_value(a, (size_t[]){ 0 }) == 2);
        text = render(m);
        CHECK(text && has_line(text, "shared_total{status=\"202\"} 2"));
        CHECK(text &&
              strstr(strstr(text, "# TYPE shared_total") + 1, "# TYPE shared_total") == NULL);
        free(text);
        metrics_free(m);
}

TEST(two_labels_make_every_combination) {
        struct metrics *m = NULL;
        struct metrics_counter *c = NULL;
        size_t at[2];
        char *text;

        CHECK(metrics_new(&m) == 0);
        CHECK(metrics_counter_register(m, "homing_decisions_total", "Decisions.", by_outcome_reason,
                                       &c) == 0);
        CHECK(metrics_counter_lookup(c, (const char *[]){ "stay", "cooldown" }, at) == 0);
        CHECK(at[0] == 1 && at[1] == 2);
        metrics_counter_add(c, at, 3);
        metrics_counter_inc(c, (size_t[]){ 0, 0 });
        metrics_counter_inc(c, (size_t[]){ 0, 3 }); /* outside: ignored */
        text = render(m);
        CHECK(text != NULL);
        if (text) {
                CHECK(has_line(text,
                               "homing_decisions_total{outcome=\"move\",reason=\"closer\"} 1"));
                CHECK(has_line(text,
                               "homing_decisions_total{outcome=\"move\",reason=\"dwell\"} 0"));
                CHECK(has_line(text,
                               "homing_decisions_total{outcome=\"stay\",reason=\"cooldown\"} 3"));
                CHECK(has_line(text,
                               "homing_decisions_total{outcome=\"stay\",reason=\"closer\"} 0"));
        }
        free(text);
        metrics_free(m);
}

TEST(gauges_set_add_and_render_doubles) {
        struct metrics *m = NULL;
        struct metrics_gauge *g = NULL, *depth = NULL;
        char *text;

        CHECK(metrics_new(&m) == 0);
        CHECK(metrics_gauge_register(m, "homing_queue_depth", "Depth.", NULL, &depth) == 0);
        CHECK(metrics_gauge_register(m, "homing_temperature_celsius", "Temperature.", by_status,
                                     &g) == 0);
        metrics_gauge_set(depth, NULL, 10);
        metrics_gauge_add(depth, NULL, -3);
        metrics_gauge_add(depth, NULL, 0.5);
        CHECK_NEAR(metrics_gauge_value(depth, NULL), 7.5, 0);
        metrics_gauge_set(g, (size_t[]){ 0 }, 0.1);
        metrics_gauge_set(g, (size_t[]){ 1 }, -1e300);
        metrics_gauge_set(g, (size_t[]){ 2 }, 1.0 / 0.0);
        CHECK(isnan(metrics_gauge_value(g, (size_t[]){ 3 })));
        text = render(m);
        CHECK(text != NULL);
        if (text) {
                CHECK(has_line(text, "homing_queue_depth 7.5"));
                CHECK(has_line(text, "homing_temperature_celsius{status=\"202\"} 0.1"));
                CHECK(has_line(text, "homing_temperature_celsius{status=\"400\"} -1e+300"));
                CHECK(has_line(text, "homing_temperature_celsius{status=\"503\"} +Inf"));
        }
        free(text);
        metrics_free(m);
}

TEST(histograms_have_cumulative_buckets_sum_and_count) {
        struct metrics *m = NULL;
        struct metrics_histogram *h = NULL;
        char *text;

        CHECK(metrics_new(&m) == 0);
        CHECK(metrics_histogram_register(m, "homing_ingest_duration_seconds", "Ingest latency.",
                                         NULL, latency_bounds, 4, &h) == 0);
        metrics_histogram_observe(h, NULL, 0.0005);
        metrics_histogram_observe(h, NULL, 0.001); /* on a bound: that bucket (le) */
        metrics_histogram_observe(h, NULL, 0.05);
        metrics_histogram_observe(h, NULL, 2.5);
        metrics_histogram_observe(h, NULL, 0.0 / 0.0); /* NaN: ignored */
        text = render(m);
        CHECK(text != NULL);
        if (text) {
                CHECK_STR(text, "# HELP homing_ingest_duration_seconds Ingest latency.\n"
                                "# TYPE homing_ingest_duration_seconds histogram\n"
                                "homing_ingest_duration_seconds_bucket{le=\"0.001\"} 2\n"
                                "homing_ingest_duration_seconds_bucket{le=\"0.01\"} 2\n"
                                "homing_ingest_duration_seconds_bucket{le=\"0.1\"} 3\n"
                                "homing_ingest_duration_seconds_bucket{le=\"1\"} 3\n"
                                "homing_ingest_duration_seconds_bucket{le=\"+Inf\"} 4\n"
                                "homing_ingest_duration_seconds_sum 2.5515\n"
                                "homing_ingest_duration_seconds_count 4\n");
        }
        free(text);
        metrics_free(m);
}

TEST(labelled_histograms_put_le_last) {
        static const char *const kinds[] = { "job", "audit", NULL };
        static const struct metrics_label by_kind[] = { { "kind", kinds }, { NULL, NULL } };
        struct metrics *m = NULL;
        struct metrics_histogram *h = NULL;
        char *text;

        CHECK(metrics_new(&m) == 0);
        CHECK(metrics_histogram_register(m, "homing_produce_seconds", "Produce.", by_kind,
                                         latency_bounds, 4, &h) == 0);
        metrics_histogram_observe(h, (size_t[]){ 1 }, 0.02);
        text = render(m);
        CHECK(text != NULL);
        if (text) {
                CHECK(has_line(text, "homing_produce_seconds_bucket{kind=\"job\",le=\"+Inf\"} 0"));
                CHECK(has_line(text,
                               "homing_produce_seconds_bucket{kind=\"audit\",le=\"0.01\"} 0"));
                CHECK(has_line(text, "homing_produce_seconds_bucket{kind=\"audit\",le=\"0.1\"} 1"));
                CHECK(has_line(text, "homing_produce_seconds_sum{kind=\"audit\"} 0.02"));
                CHECK(has_line(text, "homing_produce_seconds_count{kind=\"audit\"} 1"));
        }
        free(text);
        metrics_free(m);
}

TEST(label_values_and_help_are_escaped) {
        static const char *const odd[] = { "a\"b", "back\\slash", "new\nline", "caf\xc3\xa9",
                                           NULL };
        static const struct metrics_label by_odd[] = { { "value", odd }, { NULL, NULL } };
        static const char *const bad_utf8[] = { "\xff", NULL };
        static const struct metrics_label by_bad[] = { { "value", bad_utf8 }, { NULL, NULL } };
        struct metrics *m = NULL;
        struct metrics_counter *c = NULL;
        size_t at[1];
        char *text;

        CHECK(metrics_new(&m) == 0);
        CHECK(metrics_counter_register(m, "odd_total", "Help with \\ and\nnewline \"quoted\".",
                                       by_odd, &c) == 0);
        CHECK(metrics_counter_lookup(c, (const char *[]){ "new\nline" }, at) == 0 && at[0] == 2);
        CHECK(metrics_counter_register(m, "bad_total", "Not UTF-8.", by_bad, NULL) == -EINVAL);
        text = render(m);
        CHECK(text != NULL);
        if (text) {
                CHECK(has_line(text, "# HELP odd_total Help with \\\\ and\\nnewline \"quoted\"."));
                CHECK(has_line(text, "odd_total{value=\"a\\\"b\"} 0"));
                CHECK(has_line(text, "odd_total{value=\"back\\\\slash\"} 0"));
                CHECK(has_line(text, "odd_total{value=\"new\\nline\"} 0"));
                CHECK(has_line(text, "odd_total{value=\"caf\xc3\xa9\"} 0"));
        }
        free(text);
        metrics_free(m);
}

TEST(registration_refuses_bad_names_and_collisions) {
        static const char *const v[] = { "x", NULL }, *const dup[] = { "x", "x", NULL };
        static const char *const none[] = { NULL };
        static const struct metrics_label le[] = { { "le", v }, { NULL, NULL } };
        static const struct metrics_label reserved[] = { { "__name", v }, { NULL, NULL } };
        static const struct metrics_label twice[] = { { "a", v }, { "a", v }, { NULL, NULL } };
        static const struct metrics_label duplicate_values[] = { { "a", dup }, { NULL, NULL } };
        static const struct metrics_label no_values[] = { { "a", none }, { NULL, NULL } };
        static const double unsorted[] = { 1, 0.5 }, infinite[] = { 1, 1.0 / 0.0 };
        struct metrics *m = NULL;

        CHECK(metrics_new(&m) == 0);
        CHECK(metrics_counter_register(m, "9starts_with_digit", "x", NULL, NULL) == -EINVAL);
        CHECK(metrics_counter_register(m, "has-dash", "x", NULL, NULL) == -EINVAL);
        CHECK(metrics_counter_register(m, "", "x", NULL, NULL) == -EINVAL);
        CHECK(metrics_counter_register(m, "no_help", NULL, NULL, NULL) == -EINVAL);
        CHECK(metrics_counter_register(m, "ok:colon_total", "x", NULL, NULL) == 0);
        CHECK(metrics_counter_register(m, "ok:colon_total", "other help", NULL, NULL) == -EEXIST);
        CHECK(metrics_counter_register(m, "ok:colon_total", "x", le, NULL) == -EEXIST);
        CHECK(metrics_gauge_register(m, "ok:colon_total", "x", NULL, NULL) == -EEXIST);
        CHECK(metrics_counter_register(m, "reserved_total", "x", reserved, NULL) == -EINVAL);
        CHECK(metrics_counter_register(m, "twice_total", "x", twice, NULL) == -EINVAL);
        CHECK(metrics_counter_register(m, "dup_total", "x", duplicate_values, NULL) == -EINVAL);
        CHECK(metrics_counter_register(m, "empty_total", "x", no_values, NULL) == -EINVAL);
        CHECK(metrics_counter_register(m, "le_ok_total", "x", le, NULL) == 0);
        CHECK(metrics_histogram_register(m, "le_seconds", "x", le, latency_bounds, 4, NULL) ==
              -EINVAL);
        CHECK(metrics_histogram_register(m, "unsorted_seconds", "x", NULL, unsorted, 2, NULL) ==
              -EINVAL);
        CHECK(metrics_histogram_register(m, "inf_seconds", "x", NULL, infinite, 2, NULL) ==
              -EINVAL);
        CHECK(metrics_histogram_register(m, "nobuckets_seconds", "x", NULL, latency_bounds, 0,
                                         NULL) == -EINVAL);
        /* A histogram's samples and other families' names must not meet. */
        CHECK(metrics_histogram_register(m, "lat_seconds", "x", NULL, latency_bounds, 4, NULL) ==
              0);
        CHECK(metrics_gauge_register(m, "lat_seconds_count", "x", NULL, NULL) == -EEXIST);
        CHECK(metrics_counter_register(m, "lat_seconds_bucket", "x", NULL, NULL) == -EEXIST);
        CHECK(metrics_gauge_register(m, "other_sum", "x", NULL, NULL) == 0);
        CHECK(metrics_histogram_register(m, "other", "x", NULL, latency_bounds, 4, NULL) ==
              -EEXIST);
        metrics_free(m);
        CHECK(metrics_free(NULL) == NULL);
}

struct lag {
        pthread_mutex_t lock;
        long long by_partition[3];
        int assigned[3];
};

static void collect_lag(void *userdata, struct metrics_emitter *e) {
        struct lag *lag = userdata;
        pthread_mutex_lock(&lag->lock);
        for (int p = 0; p < 3; p++) {
                char name[16];
                if (!lag->assigned[p])
                        continue;
                snprintf(name, sizeof(name), "%d", p);
                metrics_emit(e, (const char *[]){ "homing.locations.v1", name },
                             (double)lag->by_partition[p]);
        }
        pthread_mutex_unlock(&lag->lock);
}

static double backlog(void *userdata) {
        return *(double *)userdata;
}

TEST(callbacks_compute_on_scrape_and_detach) {
        struct lag lag = { PTHREAD_MUTEX_INITIALIZER, { 5, 0, 42 }, { 1, 0, 1 } };
        double rows = 12;
        struct metrics *m = NULL;
        struct metrics_fn *lag_fn = NULL, *backlog_fn = NULL;
        char *text;

        CHECK(metrics_new(&m) == 0);
        CHECK(metrics_gauge_fn(m, "homing_outbox_backlog_rows", "Unsent outbox rows.", backlog,
                               &rows, &backlog_fn) == 0);
        CHECK(metrics_gauge_fn_labelled(m, "homing_consumer_lag_messages", "Lag.",
                                        (const char *[]){ "topic", "partition", NULL }, collect_lag,
                                        &lag, &lag_fn) == 0);
        text = render(m);
        CHECK(text != NULL);
        if (text) {
                CHECK(has_line(text, "homing_outbox_backlog_rows 12"));
                CHECK(has_line(text, "homing_consumer_lag_messages{topic=\"homing.locations.v1\","
                                     "partition=\"0\"} 5"));
                CHECK(has_line(text, "homing_consumer_lag_messages{topic=\"homing.locations.v1\","
                                     "partition=\"2\"} 42"));
                CHECK(strstr(text, "partition=\"1\"") == NULL);
        }
        free(text);

        rows = 0.0 / 0.0; /* unknown now: no sample */
        metrics_fn_detach(lag_fn);
        /* A second callback while one is attached: refused. */
        CHECK(metrics_gauge_fn(m, "homing_outbox_backlog_rows", "Unsent outbox rows.", backlog,
                               &rows, NULL) == -EEXIST);
        text = render(m);
        CHECK(text != NULL);
        if (text) {
                CHECK(strstr(text, "\nhoming_outbox_backlog_rows ") == NULL);
                CHECK(has_line(text, "# TYPE homing_outbox_backlog_rows gauge"));
                CHECK(has_line(text, "# TYPE homing_consumer_lag_messages gauge"));
                CHECK(strstr(text, "homing_consumer_lag_messages{") == NULL);
        }
        free(text);

        /* Detached, the family takes a new callback (a component that restarted). */
        lag.by_partition[0] = 6;
        CHECK(metrics_gauge_fn_labelled(m, "homing_consumer_lag_messages", "Lag.",
                                        (const char *[]){ "topic", "partition", NULL }, collect_lag,
                                        &lag, NULL) == 0);
        text = render(m);
        CHECK(text && strstr(text, "partition=\"0\"} 6\n") != NULL);
        free(text);
        metrics_fn_detach(NULL);
        metrics_free(m);
}

#define THREADS 8
#define ROUNDS 100000

struct shared {
        struct metrics *m;
        struct metrics_counter *c;
        struct metrics_gauge *g;
        struct metrics_histogram *h;
};

static void *hammer(void *arg) {
        struct shared *s = arg;
        for (int i = 0; i < ROUNDS; i++) {
                size_t at[1] = { (size_t)(i % 3) };
                metrics_counter_inc(s->c, at);
                metrics_gauge_add(s->g, NULL, 1);
                metrics_histogram_observe(s->h, NULL, (i % 2) ? 0.5 : 2);
                if (i % 10000 == 0) {
                        char *text = NULL;
                        if (metrics_render(s->m, &text, NULL) == 0)
                                free(text);
                }
        }
        return NULL;
}

TEST(concurrent_updates_lose_nothing) {
        struct shared s = { 0 };
        pthread_t threads[THREADS];
        uint64_t total = 0;
        char *text;

        CHECK(metrics_new(&s.m) == 0);
        CHECK(metrics_counter_register(s.m, "hits_total", "Hits.", by_status, &s.c) == 0);
        CHECK(metrics_gauge_register(s.m, "level", "Level.", NULL, &s.g) == 0);
        CHECK(metrics_histogram_register(s.m, "work_seconds", "Work.", NULL, latency_bounds, 4,
                                         &s.h) == 0);
        for (int i = 0; i < THREADS; i++)
                CHECK(pthread_create(&threads[i], NULL, hammer, &s) == 0);
        for (int i = 0; i < THREADS; i++)
                pthread_join(threads[i], NULL);
        for (size_t i = 0; i < 3; i++)
                total += metrics_counter_value(s.c, (size_t[]){ i });
        CHECK(total == (uint64_t)THREADS * ROUNDS);
        CHECK_NEAR(metrics_gauge_value(s.g, NULL), (double)THREADS * ROUNDS, 0);
        text = render(s.m);
        CHECK(text != NULL);
        if (text) {
                char line[128];
                snprintf(line, sizeof(line), "work_seconds_count %d", THREADS * ROUNDS);
                CHECK(has_line(text, line));
                snprintf(line, sizeof(line), "work_seconds_bucket{le=\"1\"} %d",
                         THREADS * ROUNDS / 2);
                CHECK(has_line(text, line));
                /* 0.5 and 2 add up exactly in binary: the CAS loop lost nothing. */
                snprintf(line, sizeof(line), "work_seconds_sum %d", THREADS * ROUNDS / 2 * 5 / 2);
                CHECK(has_line(text, line));
        }
        free(text);
        metrics_free(s.m);
}

/* A registry shaped like homing's, with something in every kind of family. */
static struct metrics *homing_like_registry(void) {
        static const char *const codes[] = {
                "200", "202", "400", "401", "413", "422", "503", NULL
        };
        static const struct metrics_label by_code[] = { { "code", codes }, { NULL, NULL } };
        static const char *const states[] = { "queued", "running",   "succeeded",
                                              "failed", "cancelled", NULL };
        static const struct metrics_label by_state[] = { { "state", states }, { NULL, NULL } };
        static const char *const odd[] = { "quote\"back\\slash\nnewline", NULL };
        static const struct metrics_label by_odd[] = { { "path", odd }, { NULL, NULL } };
        static struct lag lag = { PTHREAD_MUTEX_INITIALIZER, { 1, 2, 3 }, { 1, 1, 1 } };
        static double rows = 3;
        struct metrics *m = NULL;
        struct metrics_counter *c = NULL, *d = NULL, *o = NULL;
        struct metrics_gauge *g = NULL;
        struct metrics_histogram *h = NULL;

        if (metrics_new(&m) < 0)
                return NULL;
        if (metrics_counter_register(m, "homing_http_requests_total", "HTTP requests by status.",
                                     by_code, &c) < 0 ||
            metrics_counter_register(m, "homing_decisions_total",
                                     "Placement decisions by outcome and reason.",
                                     by_outcome_reason, &d) < 0 ||
            metrics_counter_register(m, "homing_odd_total", "Odd \\ help\nwith a newline.", by_odd,
                                     &o) < 0 ||
            metrics_gauge_register(m, "homing_transfers", "Transfers by state.", by_state, &g) <
                    0 ||
            metrics_histogram_register(m, "homing_ingest_duration_seconds",
                                       "Time from request to answer.", NULL, latency_bounds, 4,
                                       &h) < 0 ||
            metrics_gauge_fn(m, "homing_outbox_backlog_rows", "Unsent outbox rows.", backlog, &rows,
                             NULL) < 0 ||
            metrics_gauge_fn_labelled(m, "homing_consumer_lag_messages", "Consumer lag.",
                                      (const char *[]){ "topic", "partition", NULL }, collect_lag,
                                      &lag, NULL) < 0 ||
            metrics_register_process(m) < 0)
                return metrics_free(m);
        metrics_counter_add(c, (size_t[]){ 1 }, 10);
        metrics_counter_inc(d, (size_t[]){ 0, 0 });
        metrics_counter_inc(o, (size_t[]){ 0 });
        metrics_gauge_set(g, (size_t[]){ 0 }, 4);
        metrics_histogram_observe(h, NULL, 0.003);
        return m;
}

TEST(promtool_accepts_the_exposition) {
        char path[] = "/tmp/test-metrics-XXXXXX", cmd[256], line[512];
        struct metrics *m = homing_like_registry();
        char *text = NULL;
        FILE *p, *out;
        int fd, status;

        CHECK(m != NULL);
        if (!m)
                return;
        CHECK(metrics_render(m, &text, NULL) == 0);
        CHECK(text && strstr(text, "process_resident_memory_bytes ") != NULL);
        CHECK(text && strstr(text, "process_cpu_seconds_total ") != NULL);
        CHECK(text && strstr(text, "process_start_time_seconds 1") != NULL);
        fd = mkstemp(path);
        CHECK(fd >= 0);
        if (fd >= 0 && text) {
                close(fd);
                if (system("command -v promtool >/dev/null 2>&1") != 0) {
                        printf("# promtool is missing: deploy/install-deps installs it "
                               "(Debian package prometheus)\n");
                        CHECK(!"promtool installed");
                } else {
                        snprintf(cmd, sizeof(cmd), "promtool check metrics >%s 2>&1", path);
                        p = popen(cmd, "w");
                        CHECK(p != NULL);
                        if (p) {
                                fputs(text, p);
                                status = pclose(p);
                                CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
                                out = fopen(path, "r");
                                /* Lint findings would be printed: there must be none. */
                                while (out && fgets(line, sizeof(line), out)) {
                                        printf("# promtool: %s", line);
                                        CHECK(!"promtool says nothing");
                                }
                                if (out)
                                        fclose(out);
                        }
                }
                unlink(path);
        }
        if (text && (!strstr(text, "homing_ingest_duration_seconds_count 1")))
                CHECK(!"the histogram was rendered");
        free(text);
        metrics_free(m);
}

/* GET `path` from 127.0.0.1:port with one more header line (or none); the whole answer, malloc'd. */
static char *http_get_with(int port, const char *path, const char *header) {
        struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
        char request[256], *answer = NULL;
        size_t len = 0;
        FILE *mem;
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        ssize_t n;
        char chunk[4096];

        if (fd < 0)
                return NULL;
        inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
        if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
                close(fd);
                return NULL;
        }
        snprintf(request, sizeof(request),
                 "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n%s%s\r\n", path,
                 header ? header : "", header ? "\r\n" : "");
        if (write(fd, request, strlen(request)) != (ssize_t)strlen(request)) {
                close(fd);
                return NULL;
        }
        mem = open_memstream(&answer, &len);
        while (mem && (n = read(fd, chunk, sizeof(chunk))) > 0)
                fwrite(chunk, 1, (size_t)n, mem);
        if (mem)
                fclose(mem);
        close(fd);
        return answer;
}

static char *http_get(int port, const char *path) {
        return http_get_with(port, path, NULL);
}

TEST(server_serves_metrics_and_healthz) {
        struct metrics *m = NULL;
        struct metrics_server *s = NULL;
        struct metrics_counter *c = NULL;
        char err[256] = "";
        char *answer;

        CHECK(metrics_new(&m) == 0);
        CHECK(metrics_counter_register(m, "served_total", "Served.", NULL, &c) == 0);
        metrics_counter_add(c, NULL, 3);
        CHECK(metrics_server_start(m, "nonsense", NULL, &s, err, sizeof(err)) == -EINVAL);
        CHECK(err[0] != '\0');
        CHECK(metrics_server_start(m, "127.0.0.1:0", NULL, &s, err, sizeof(err)) == 0);
        CHECK(metrics_server_port(s) > 0);
        if (s) {
                answer = http_get(metrics_server_port(s), "/metrics");
                CHECK(answer && strstr(answer, "HTTP/1.1 200") == answer);
                CHECK(answer && strstr(answer, "text/plain; version=0.0.4") != NULL);
                CHECK(answer && strstr(answer, "\r\n\r\n# HELP served_total Served.\n") != NULL);
                CHECK(answer && strstr(answer, "\nserved_total 3\n") != NULL);
                free(answer);
                answer = http_get(metrics_server_port(s), "/healthz");
                CHECK(answer && strstr(answer, "HTTP/1.1 200") == answer);
                CHECK(answer && strstr(answer, "{\"status\":\"ok\"}") != NULL);
                free(answer);
                answer = http_get(metrics_server_port(s), "/nope");
                CHECK(answer && strstr(answer, "HTTP/1.1 404") == answer);
                free(answer);
        }
        s = metrics_server_free(s);
        CHECK(s == NULL);
        metrics_free(m);
}

TEST(server_wants_its_token_and_without_one_serves_only_loopback) {
        struct metrics *m = NULL;
        struct metrics_server *s = NULL;
        char err[256] = "";
        char *answer;

        CHECK(metrics_new(&m) == 0);
        /* Refused before it listens: nothing is bound beyond loopback here. */
        CHECK(metrics_server_start(m, "0.0.0.0:0", NULL, &s, err, sizeof(err)) == -EPERM);
        CHECK(strstr(err, "--metrics-token-file") != NULL);
        CHECK(metrics_server_start(m, "[::]:0", "", &s, err, sizeof(err)) == -EPERM);
        CHECK(metrics_server_start(m, "127.0.0.1:0", "s3cret", &s, err, sizeof(err)) == 0);
        if (s) {
                answer = http_get_with(metrics_server_port(s), "/metrics", NULL);
                CHECK(answer && strstr(answer, "HTTP/1.1 401") == answer);
                CHECK(answer && strstr(answer, "WWW-Authenticate: Bearer") != NULL);
                free(answer);
                answer = http_get_with(metrics_server_port(s), "/metrics",
                                       "Authorization: Bearer s3cre");
                CHECK(answer && strstr(answer, "HTTP/1.1 401") == answer);
                free(answer);
                answer = http_get_with(metrics_server_port(s), "/metrics",
                                       "Authorization: Bearer s3cret");
                CHECK(answer && strstr(answer, "HTTP/1.1 200") == answer);
                free(answer);
                answer = http_get_with(metrics_server_port(s), "/healthz", NULL);
                CHECK(answer && strstr(answer, "HTTP/1.1 200") == answer);
                free(answer);
        }
        metrics_server_free(s);
        metrics_free(m);
}

TAP_MAIN(TAP_TEST(counters_count_per_label_value),
         TAP_TEST(the_same_definition_twice_is_one_family),
         TAP_TEST(two_labels_make_every_combination), TAP_TEST(gauges_set_add_and_render_doubles),
         TAP_TEST(histograms_have_cumulative_buckets_sum_and_count),
         TAP_TEST(labelled_histograms_put_le_last), TAP_TEST(label_values_and_help_are_escaped),
         TAP_TEST(registration_refuses_bad_names_and_collisions),
         TAP_TEST(callbacks_compute_on_scrape_and_detach),
         TAP_TEST(concurrent_updates_lose_nothing), TAP_TEST(promtool_accepts_the_exposition),
         TAP_TEST(server_serves_metrics_and_healthz),
         TAP_TEST(server_wants_its_token_and_without_one_serves_only_loopback))
