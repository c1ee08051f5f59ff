/*
 * homing replay — what placement policies would have done over a recorded
 * history, and how close they kept each snapshot to its user: the
 * scheduler's own engine with the settings given (the flags, variables and
 * file the scheduler reads), the naive policy, the oracle and a fixed home,
 * side by side (replay/ runs them). The history is a file of JSON lines
 * (`homing simulate`'s, or any topic records) or a range of the real
 * locations topic, read by a consumer that commits nothing; the catalog a
 * CSV file or PostgreSQL's, read in a read-only session. Nothing is written
 * anywhere but the outputs asked for; --publish posts the figures to the
 * API as a placement report, for the dashboard's "Placement quality" page.
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/config.h"
#include "bus/bus.h"
#include "cmd/args.h"
#include "cmd/catalog.h"
#include "cmd/commands.h"
#include "replay/plot.h"
#include "replay/replay.h"
#include "report/report.h"
#include "scheduler/scheduler.h"
#include "scheduler/world.h"
#include "store/store.h"

#define PROG "homing replay"
#define GIB 1073741824.0
#define MAX_POLICIES 64

static const char usage[] =
        "usage: homing replay --history FILE|kafka [--catalog FILE] [options] [settings]\n"
        "\n"
        "Runs placement policies over a recorded history and prints, for each, the\n"
        "distance from the user to the datacenter holding the active copy at every\n"
        "restore (mean, p50, p95, p99), the transfers and the bytes they send. Each\n"
        "user has one snapshot, first at the datacenter nearest their first report.\n"
        "Nothing is written to PostgreSQL and nothing is published, but with --publish\n"
        "the figures, which the API stores as a placement report.\n"
        "\n"
        "  --history FILE        JSON lines: topic records, {\"restore\": ...} and\n"
        "                        {\"trip\": ...} lines\n"
        "                        (homing simulate's output; - for standard input)\n"
        "  --history kafka       the topic --topic-locations at --kafka-brokers, read by\n"
        "                        a consumer of its own that commits nothing\n"
        "  --offsets FROM:TO     kafka: each partition from offset FROM to before TO\n"
        "                        (default 0: to the end as it is when the replay starts)\n"
        "  --since, --until TIME only records received from / before this RFC 3339 time\n"
        "  --catalog FILE        datacenters as CSV (id, lat, lon: homing nearest's\n"
        "                        format), all active with room; default PostgreSQL's\n"
        "                        (--pg-dsn, a read-only session)\n"
        "  --policies LIST       of oracle, home, naive, homing, homing+prestage (default\n"
        "                        all five); homing is the scheduler's policy as the\n"
        "                        settings give it (--move-margin-m, --dwell-s, ...);\n"
        "                        homing+prestage also keeps a warm copy at the\n"
        "                        destination of each announced ({\"trip\": ...} lines) or\n"
        "                        recurring trip, from before the arrival to its end\n"
        "  --prestage-lead-s S   a pre-staged copy is due this long before the arrival\n"
        "                        (default 3600)\n"
        "  --prestage-min-weeks N  recurring: the same site on the same weekday in N of\n"
        "                        the last 4 weeks (default 2)\n"
        "  --delta-share X       what moving onto a pre-staged copy sends, as a share of\n"
        "                        the snapshot (default 0.02)\n"
        "  --sweep-x NAME=V,V.., --sweep-y NAME=V,V..\n"
        "                        homing's policy over a grid of two of its settings\n"
        "                        (move-margin-m, move-margin-ratio, dwell-s, dwell-reports,\n"
        "                        cooldown-s, max-moves-per-day, km-per-gib); the Pareto\n"
        "                        front of mean restore distance against bytes is marked\n"
        "  --snapshot-gib N      every snapshot's size (default 10)\n"
        "  --bandwidth B         bytes per second a transfer moves (default 12500000)\n"
        "  --json FILE           the figures as JSON\n"
        "  --events FILE         every transfer queued, arrived or cancelled, JSON lines\n"
        "  --publish NAME        post the figures (as --json writes them) to the API at\n"
        "                        --api-url as a placement report named NAME, with the\n"
        "                        operator token HOMING_OPERATOR_TOKEN (--operator-token)\n"
        "  --png DIR             pictures (made if missing): tradeoff.png (mean restore\n"
        "                        distance against GiB per user-day), distances.png (their\n"
        "                        distribution per policy), transfers-per-day.png\n"
        "\n"
        "Exit status: 0 done, 1 bad data or a source failed, 2 bad command line.\n";

struct sweep {
        char name[64];
        double values[32];
        size_t n;
};

struct options {
        const char *history, *offsets, *since, *until, *catalog, *policies, *sweep_x, *sweep_y;
        const char *snapshot_gib, *bandwidth, *json, *events, *publish, *png;
        const char *prestage_lead_s, *prestage_min_weeks, *delta_share;
        double lead_s, min_weeks, delta;
        int64_t from_offset, to_offset, since_ms, until_ms;
        struct sweep x, y;
};

/* ---- policies -------------------------------------------------------------- */

static int set_setting(struct engine_policy *p, const char *name, double v) {
        if (!strcmp(name, "move-margin-m") && v >= 0)
                p->margin_m = v;
        else if (!strcmp(name, "move-margin-ratio") && v >= 0 && v < 1)
                p->margin_ratio = v;
        else if (!strcmp(name, "dwell-s") && v >= 0)
                p->dwell_ms = (int64_t)(v * 1000);
        else if (!strcmp(name, "dwell-reports") && v >= 1 && v <= INT32_MAX && v == floor(v))
                p->min_reports = (int32_t)v;
        else if (!strcmp(name, "cooldown-s") && v >= 0)
                p->cooldown_ms = (int64_t)(v * 1000);
        else if (!strcmp(name, "max-moves-per-day") && v >= 1 && v <= INT32_MAX && v == floor(v))
                p->max_moves_per_day = (int32_t)v;
        else if (!strcmp(name, "km-per-gib") && v >= 0)
                p->km_per_gib = v;
        else
                return -EINVAL;
        return 0;
}

/* NAME=V,V,...; 0, or -1 after saying what is wrong. */
static int sweep_parse(const char *flag, const char *text, struct sweep *out) {
        const char *eq = strchr(text, '=');
        char *copy, *save = NULL;
        struct engine_policy probe;
        int ok = 1;

        engine_policy_defaults(&probe);
        if (!eq || eq == text || (size_t)(eq - text) >= sizeof(out->name)) {
                fprintf(stderr, PROG ": %s wants NAME=V,V,..., not '%s'\n", flag, text);
                return -1;
        }
        snprintf(out->name, sizeof(out->name), "%.*s", (int)(eq - text), text);
        copy = strdup(eq + 1);
        if (!copy)
                return -1;
        for (char *v = strtok_r(copy, ",", &save); v && ok; v = strtok_r(NULL, ",", &save)) {
                char *end;
                double d = strtod(v, &end);
                if (*end || !isfinite(d) || out->n == 32 || set_setting(&probe, out->name, d) < 0)
                        ok = 0;
                else
                        out->values[out->n++] = d;
        }
        free(copy);
        if (!ok || out->n == 0) {
                fprintf(stderr,
                        PROG ": %s: '%s' is not a setting a sweep takes with these values (1 to "
                             "32 of them)\n",
                        flag, text);
                return -1;
        }
        return 0;
}

struct policy_set {
        struct replay_policy v[MAX_POLICIES];
        char names[MAX_POLICIES][192];
        bool swept[MAX_POLICIES];
        size_t n;
        long homing, naive, oracle, home, prestage; /* their index, or -1 */
};

static int policies_build(const struct options *o, const struct engine_policy *homing,
                          struct policy_set *set) {
        const char *list = o->policies ? o->policies : "oracle,home,naive,homing,homing+prestage";
        char *copy = strdup(list), *save = NULL;
        int r = 0;

        set->homing = set->naive = set->oracle = set->home = set->prestage = -1;
        if (!copy)
                return -1;
        for (char *w = strtok_r(copy, ",", &save); w && r == 0; w = strtok_r(NULL, ",", &save)) {
                struct replay_policy *p = &set->v[set->n];
                long *slot = !strcmp(w, "oracle")            ? &set->oracle
                             : !strcmp(w, "home")            ? &set->home
                             : !strcmp(w, "naive")           ? &set->naive
                             : !strcmp(w, "homing")          ? &set->homing
                             : !strcmp(w, "homing+prestage") ? &set->prestage
                                                             : NULL;
                if (!slot || *slot >= 0) {
                        fprintf(stderr,
                                PROG ": --policies: '%s' is not one of oracle, home, naive, "
                                     "homing, homing+prestage (each once)\n",
                                w);
                        r = -1;
                        break;
                }
                *slot = (long)set->n;
                snprintf(set->names[set->n], sizeof(set->names[0]), "%s", w);
                p->name = set->names[set->n];
                p->engine = *homing;
                p->kind = slot == &set->oracle ? REPLAY_ORACLE
                          : slot == &set->home ? REPLAY_HOME
                                               : REPLAY_ENGINE;
                if (slot == &set->naive)
                        replay_naive(&p->engine);
                p->prestage = slot == &set->prestage;
                set->n++;
        }
        free(copy);
        if (r < 0)
                return r;
        if (set->n == 0 && o->x.n == 0) {
                fprintf(stderr, PROG ": --policies names none\n");
                return -1;
        }
        for (size_t i = 0; i < o->x.n; i++)
                for (size_t j = 0; j < (o->y.n ? o->y.n : 1); j++) {
                        struct replay_policy *p = &set->v[set->n];
                        if (set->n == MAX_POLICIES) {
                                fprintf(stderr, PROG ": a sweep of at most %d points\n",
                                        MAX_POLICIES - 4);
                                return -1;
                        }
                        p->engine = *homing;
                        p->kind = REPLAY_ENGINE;
                        (void)set_setting(&p->engine, o->x.name, o->x.values[i]);
                        if (o->y.n) {
                                (void)set_setting(&p->engine, o->y.name, o->y.values[j]);
                                snprintf(set->names[set->n], sizeof(set->names[0]), "%s=%g %s=%g",
                                         o->x.name, o->x.values[i], o->y.name, o->y.values[j]);
                        } else {
                                snprintf(set->names[set->n], sizeof(set->names[0]), "%s=%g",
                                         o->x.name, o->x.values[i]);
                        }
                        p->name = set->names[set->n];
                        set->swept[set->n++] = true;
                }
        return 0;
}

/* ---- the catalog ------------------------------------------------------------ */

struct catalog_view {
        struct catalog csv;
        geo_index *index;
        struct engine_zone_set anywhere;
        struct engine_context ctx;
        struct world *world; /* PostgreSQL's */
        const struct engine_context *use;
};

static int catalog_open(const struct config *cfg, const char *path, struct catalog_view *cv) {
        struct store *db = NULL;
        size_t len;
        char *buf;
        int r;

        if (path) {
                if (!(buf = cmd_read_file(path, &len))) {
                        fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
                        return -1;
                }
                if (catalog_parse(&cv->csv, path, buf, len, stderr) < 0)
                        return -1;
                /* The CSV says nothing of status or room: every site takes a snapshot. */
                for (size_t i = 0; i < cv->csv.n; i++) {
                        cv->csv.sites[i].status = GEO_SITE_ACTIVE;
                        cv->csv.sites[i].free_bytes = UINT64_MAX;
                }
                r = geo_index_new(&cv->index, cv->csv.sites, cv->csv.n, NULL, 0);
                if (r < 0) {
                        fprintf(stderr, PROG ": %s: %s\n", path, strerror(-r));
                        return -1;
                }
                cv->ctx = (struct engine_context){ cv->index, NULL, 0, &cv->anywhere, 1 };
                cv->use = &cv->ctx;
                return 0;
        }
        r = store_connect(cfg->pg_dsn, &db);
        /* A read-only session: a replay can never write PostgreSQL's truth. */
        if (r == 0)
                r = store_run(db, "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY");
        if (r == 0)
                r = world_new(&cv->world);
        if (r == 0)
                r = world_load(cv->world, db);
        if (r == 0 && geo_index_count(world_context(cv->world)->index) == 0)
                r = -ENOENT;
        if (r < 0)
                fprintf(stderr, PROG ": cannot read the catalog from PostgreSQL (%s)%s\n",
                        r == -ENOENT ? "it has no datacenter" : strerror(-r),
                        db && r != -ENOENT ? "; --catalog FILE reads a CSV instead" : "");
        store_free(db);
        if (r < 0)
                return -1;
        cv->use = world_context(cv->world);
        return 0;
}

static void catalog_close(struct catalog_view *cv) {
        geo_index_unref(cv->index);
        catalog_fini(&cv->csv);
        world_free(cv->world);
}

static const char *site_id(const struct catalog_view *cv, uint32_t site) {
        const char *id = site == ENGINE_NO_SITE ? NULL : geo_index_site_id(cv->use->index, site);
        return id ? id : "";
}

/* ---- events ------------------------------------------------------------------ */

struct run {
        const struct options *o;
        struct catalog_view *cv;
        struct policy_set *set;
        struct replay *replay;
        FILE *events;
        bool events_failed;
        size_t records, reports, restores, trips, skipped, outside;
};

static void on_event(void *ctx, const struct replay_event *e) {
        static const char *const kinds[] = { "queued", "arrived", "cancelled" };
        struct run *run = ctx;
        char ts[REPORT_TIME_LEN], at[REPORT_TIME_LEN];
        json_t *doc;
        char *text;

        if (!run->events || run->events_failed)
                return;
        report_format_time(e->ts_ms, ts);
        doc = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "policy",
                        run->set->v[e->policy].name, "event", kinds[e->kind], "user_id", e->user_id,
                        "ts", ts, "from", site_id(run->cv, e->from), "to", site_id(run->cv, e->to),
                        "bytes", (json_int_t)e->bytes);
        if (doc && e->kind == REPLAY_QUEUED) {
                report_format_time(e->arrives_ms, at);
                json_object_set_new(doc, "arrives_at", json_string(at));
        }
        if (doc && e->decision) {
                json_object_set_new(doc, "reason",
                                    json_string(engine_reason_name(e->decision->reason)));
                if (e->kind == REPLAY_QUEUED) {
                        json_object_set_new(doc, "current_m", json_real(e->decision->current_m));
                        json_object_set_new(doc, "target_m", json_real(e->decision->target_m));
                        json_object_set_new(doc, "dwell_s",
                                            json_real((double)e->decision->dwell_ms / 1000.0));
                }
        }
        text = doc ? json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
        if (!text || fprintf(run->events, "%s\n", text) < 0)
                run->events_failed = true;
        free(text);
        json_decref(doc);
}

/* ---- the sources ------------------------------------------------------------- */

static bool in_range(const struct options *o, int64_t ms) {
        return (!o->since_ms || ms >= o->since_ms) && (!o->until_ms || ms < o->until_ms);
}

/* A restore line; 0, or -EINVAL when it is not one. */
static int restore_parse(const char *line, size_t len, char user[REPORT_ID_MAX + 1], double *lat,
                         double *lon, int64_t *ts_ms) {
        json_t *doc = json_loadb(line, len, 0, NULL);
        const char *id = NULL, *ts = NULL;
        int r = -EINVAL;

        if (doc &&
            json_unpack(doc, "{s:{s:s, s:s, s:F, s:F}}", "restore", "user_id", &id, "ts", &ts,
                        "lat", lat, "lon", lon) == 0 &&
            *id && strlen(id) <= REPORT_ID_MAX && report_parse_time(ts, ts_ms) == 0 &&
            geo_point_valid(*lat, *lon)) {
                strcpy(user, id);
                r = 0;
        }
        json_decref(doc);
        return r;
}

/* A trip line (homing simulate's); 0, or -EINVAL when it is not one. */
static int trip_parse(const char *line, size_t len, char user[REPORT_ID_MAX + 1],
                      struct engine_trip *trip, int64_t *ts_ms) {
        json_t *doc = json_loadb(line, len, 0, NULL);
        const char *id = NULL, *ts = NULL, *arrive = NULL, *back = NULL;
        int r = -EINVAL;

        *trip = (struct engine_trip){ 0 };
        if (doc &&
            json_unpack(doc, "{s:{s:s, s:s, s:F, s:F, s:s, s?s}}", "trip", "user_id", &id,
                        "announced_at", &ts, "lat", &trip->lat, "lon", &trip->lon, "arrive_at",
                        &arrive, "return_at", &back) == 0 &&
            *id && strlen(id) <= REPORT_ID_MAX && report_parse_time(ts, ts_ms) == 0 &&
            report_parse_time(arrive, &trip->arrive_ms) == 0 &&
            (!back || report_parse_time(back, &trip->return_ms) == 0) &&
            geo_point_valid(trip->lat, trip->lon) && (!back || trip->return_ms > trip->arrive_ms)) {
                strcpy(user, id);
                r = 0;
        }
        json_decref(doc);
        return r;
}

/* One line of a history file; 0, or -1 after saying what is wrong. */
static int history_line(struct run *run, const char *name, size_t lineno, const char *line,
                        size_t len) {
        struct report rep;
        int r;

        run->records++;
        if (len > 11 && !strncmp(line, "{\"restore\"", 10)) {
                char user[REPORT_ID_MAX + 1];
                double lat, lon;
                int64_t ts;
                if (restore_parse(line, len, user, &lat, &lon, &ts) < 0) {
                        fprintf(stderr,
                                PROG ": %s:%zu: a restore wants user_id, ts (RFC 3339), lat "
                                     "and lon\n",
                                name, lineno);
                        return -1;
                }
                if (!in_range(run->o, ts)) {
                        run->outside++;
                        return 0;
                }
                run->restores++;
                r = replay_restore(run->replay, user, lat, lon, ts);
        } else if (len > 8 && !strncmp(line, "{\"trip\"", 7)) {
                char user[REPORT_ID_MAX + 1];
                struct engine_trip trip;
                int64_t ts;
                if (trip_parse(line, len, user, &trip, &ts) < 0) {
                        fprintf(stderr,
                                PROG ": %s:%zu: a trip wants user_id, announced_at, lat, lon, "
                                     "arrive_at and maybe return_at (after it)\n",
                                name, lineno);
                        return -1;
                }
                if (!in_range(run->o, ts)) {
                        run->outside++;
                        return 0;
                }
                run->trips++;
                r = replay_trip(run->replay, user, &trip, ts);
        } else {
                if (report_decode(line, len, &rep) < 0) {
                        fprintf(stderr,
                                PROG ": %s:%zu: neither a location record (as the topic "
                                     "holds them) nor a restore\n",
                                name, lineno);
                        return -1;
                }
                if (!in_range(run->o, rep.received_ms ? rep.received_ms : rep.ts_ms)) {
                        run->outside++;
                        return 0;
                }
                run->reports++;
                r = replay_report(run->replay, &rep);
        }
        if (r < 0) {
                fprintf(stderr, PROG ": %s\n", strerror(-r));
                return -1;
        }
        return 0;
}

static int history_file(struct run *run, const char *path) {
        FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
        char *line = NULL;
        size_t cap = 0, lineno = 0;
        ssize_t len;
        int r = 0;

        if (!f) {
                fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
                return -1;
        }
        while (r == 0 && (len = getline(&line, &cap, f)) >= 0) {
                lineno++;
                while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
                        line[--len] = '\0';
                if (len > 0)
                        r = history_line(run, path, lineno, line, (size_t)len);
        }
        if (r == 0 && ferror(f)) {
                fprintf(stderr, PROG ": %s: cannot read\n", path);
                r = -1;
        }
        free(line);
        if (f != stdin)
                fclose(f);
        return r;
}

/* ---- the topic ----------------------------------------------------------------- */

#define MAX_PARTS 1024
#define IDLE_MS 10000 /* no message for this long once assigned: the range is read */

struct topic_read {
        const struct options *o;
        size_t n_parts;
        int32_t part[MAX_PARTS];
        int64_t next[MAX_PARTS]; /* the next offset to read */
        int64_t high[MAX_PARTS]; /* the high watermark when first known; -1 before */
};

static int on_assign(void *ctx, struct bus_partition *parts, size_t n) {
        struct topic_read *t = ctx;
        for (size_t i = 0; i < n && t->n_parts < MAX_PARTS; i++) {
                parts[i].offset = t->o->from_offset > 0 ? t->o->from_offset : BUS_OFFSET_BEGINNING;
                t->part[t->n_parts] = parts[i].partition;
                t->next[t->n_parts] = t->o->from_offset;
                t->high[t->n_parts] = -1;
                t->n_parts++;
        }
        return 0;
}

static void on_revoke(void *ctx, const struct bus_partition *parts, size_t n) {
        (void)ctx;
        (void)parts;
        (void)n;
}

/* Where partition k's range ends: --offsets' TO or the high watermark as first seen,
 * whichever comes first; -1 while neither is known. */
static int64_t range_end(const struct topic_read *t, size_t k) {
        int64_t to = t->o->to_offset > 0 ? t->o->to_offset : -1, high = t->high[k];
        return to < 0 ? high : high < 0 ? to : to < high ? to : high;
}

/* Every partition read to the end of its range. */
static bool topic_done(struct topic_read *t, struct bus_consumer *c) {
        bool done = t->n_parts > 0;
        for (size_t k = 0; k < t->n_parts; k++) {
                int64_t high;
                if (t->high[k] < 0 && bus_consumer_high_watermark(c, t->part[k], &high) == 0)
                        t->high[k] = high;
                done = done && range_end(t, k) >= 0 && t->next[k] >= range_end(t, k);
        }
        return done;
}

static int history_topic(struct run *run, const struct config *cfg) {
        static const struct bus_consumer_ops ops = { on_assign, on_revoke };
        struct topic_read t = { .o = run->o };
        struct bus_consumer *c = NULL;
        struct bus_message *m = NULL;
        char group[96], errbuf[512];
        long idle_ms = 0;
        int r;

        /* A group of its own, whose offsets are never committed: the schedulers' are untouched. */
        snprintf(group, sizeof(group), "homing-replay-%ld-%ld", (long)getpid(), (long)time(NULL));
        r = bus_consumer_new(&(struct bus_cluster){ cfg->kafka_brokers, cfg->kafka_property,
                                                    cfg->kafka_properties_file },
                             group, cfg->topic_locations, &ops, &t, &c, errbuf, sizeof(errbuf));
        if (r < 0) {
                fprintf(stderr, PROG ": cannot read %s: %s\n", cfg->topic_locations, errbuf);
                return -1;
        }
        while (!topic_done(&t, c) && idle_ms < IDLE_MS) {
                size_t len, k;
                const char *value;
                int32_t part;
                int64_t off;
                struct report rep;

                r = bus_consumer_poll(c, 200, &m);
                if (r < 0) {
                        fprintf(stderr, PROG ": %s: the consumer failed\n", cfg->topic_locations);
                        break;
                }
                if (r == 0) {
                        idle_ms += t.n_parts ? 200 : 0;
                        continue;
                }
                idle_ms = 0;
                part = bus_message_partition(m);
                off = bus_message_offset(m);
                for (k = 0; k < t.n_parts && t.part[k] != part; k++)
                        ;
                if (k == t.n_parts || (range_end(&t, k) >= 0 && off >= range_end(&t, k))) {
                        if (k < t.n_parts)
                                t.next[k] = off + 1;
                        m = bus_message_free(m);
                        continue; /* past the range */
                }
                t.next[k] = off + 1;
                run->records++;
                value = bus_message_value(m, &len);
                if (!value || report_decode(value, len, &rep) < 0) {
                        run->skipped++; /* the scheduler would quarantine it */
                } else if (!in_range(run->o, rep.received_ms)) {
                        run->outside++;
                } else {
                        run->reports++;
                        r = replay_report(run->replay, &rep);
                        if (r < 0) {
                                fprintf(stderr, PROG ": %s\n", strerror(-r));
                                m = bus_message_free(m);
                                break;
                        }
                }
                r = 0;
                m = bus_message_free(m);
        }
        bus_consumer_free(c);
        return r < 0 ? -1 : 0;
}

/* ---- the report ------------------------------------------------------------------ */

static double km(double m) {
        return m / 1000.0;
}

static json_t *distances_json(const struct replay_distances *d) {
        return json_pack("{s:I, s:f, s:f, s:f, s:f}", "n", (json_int_t)d->n, "mean_km",
                         km(d->mean_m), "p50_km", km(d->p50_m), "p95_km", km(d->p95_m), "p99_km",
                         km(d->p99_m));
}

/* Each datacenter that held a snapshot under policy i: the most it held at once. */
static json_t *peaks_json(const struct run *run, size_t i) {
        json_t *peaks = json_object();
        size_t slots = geo_index_slots(run->cv->use->index);
        for (size_t site = 0; peaks && site < slots; site++) {
                size_t n = replay_site_peak(run->replay, i, site);
                if (n && json_object_set_new(peaks, site_id(run->cv, (uint32_t)site),
                                             json_integer((json_int_t)n)) < 0) {
                        json_decref(peaks);
                        return NULL;
                }
        }
        return peaks;
}

static void day_name(int64_t day, char date[REPORT_TIME_LEN]) {
        report_format_time(day * 86400000LL, date);
        date[10] = '\0';
}

/* Transfers policy i queued on each UTC day, by date. */
static json_t *days_json(const struct run *run, size_t i) {
        json_t *days = json_object();
        const uint32_t *counts;
        int64_t first;
        size_t n = replay_daily(run->replay, i, &first, &counts, NULL);
        for (size_t d = 0; days && d < n; d++) {
                char date[REPORT_TIME_LEN];
                day_name(first + (int64_t)d, date);
                if (json_object_set_new(days, date, json_integer(counts[d])) < 0) {
                        json_decref(days);
                        return NULL;
                }
        }
        return days;
}

/* Each UTC day from the first transfer to the last, in order: transfers queued, bytes sent. */
static json_t *per_day_json(const struct run *run, size_t i) {
        json_t *days = json_array();
        const uint32_t *counts;
        const uint64_t *bytes;
        int64_t first;
        size_t n = replay_daily(run->replay, i, &first, &counts, &bytes);
        for (size_t d = 0; days && d < n; d++) {
                char date[REPORT_TIME_LEN];
                day_name(first + (int64_t)d, date);
                if (json_array_append_new(days, json_pack("{s:s, s:I, s:I}", "day", date,
                                                          "transfers", (json_int_t)counts[d],
                                                          "bytes", (json_int_t)bytes[d])) < 0) {
                        json_decref(days);
                        return NULL;
                }
        }
        return days;
}

/* The distances' 0th to 100th percentiles as [km, share] pairs; [] when there are none. */
static json_t *cdf_json(const struct run *run, size_t i, bool at_restores) {
        double m[REPLAY_PERCENTILES];
        json_t *cdf = json_array();
        if (replay_percentiles(run->replay, i, at_restores, m) == 0)
                return cdf;
        for (int k = 0; cdf && k < REPLAY_PERCENTILES; k++)
                if (json_array_append_new(cdf, json_pack("[f, f]", km(m[k]), k / 100.0)) < 0) {
                        json_decref(cdf);
                        return NULL;
                }
        return cdf;
}

static void print_row(const char *name, const char *mark, const struct replay_distances *d,
                      const struct replay_figures *f, const char *peak) {
        printf("| %s%s | %zu | %.1f | %.1f | %.1f | %.1f | %zu | %zu | %.1f %% | %.0f | %.3f | "
               "%.2f | %s (%zu) |\n",
               name, mark, d->n, km(d->mean_m), km(d->p50_m), km(d->p95_m), km(d->p99_m),
               f->transfers, f->cancelled,
               f->transfers ? 100.0 * (double)f->flaps / (double)f->transfers : 0.0,
               (double)f->bytes / GIB, f->user_days > 0 ? (double)f->transfers / f->user_days : 0,
               f->user_days > 0 ? (double)f->bytes / GIB / f->user_days : 0, peak,
               f->peak_snapshots);
}

static void goal(const char *what, double value, double bound) {
        printf("  %-44s %6.3f  (goal <= %.1f: %s)\n", what, value, bound,
               value <= bound ? "met" : "not met");
}

/* The three goals: a policy's figure over a yardstick's, and its bound. */
enum { GOAL_ORACLE, GOAL_HOME, GOAL_NAIVE, N_GOALS };
static const char *const goal_names[N_GOALS] = { "oracle_distance", "home_distance",
                                                 "naive_transfers" };
static const char *const goal_words[N_GOALS] = { "mean distance / the oracle's <= 1.5",
                                                 "mean distance / fixed home's <= 0.5",
                                                 "transfers / the naive policy's <= 0.2" };
static const double goal_bounds[N_GOALS] = { 1.5, 0.5, 0.2 };

static double mean_of(const struct replay_figures *f, bool at_restores) {
        return at_restores ? f->restores.mean_m : f->reports.mean_m;
}

/* Policy i's ratio for each goal; NAN where the yardstick is not run or is 0. */
static void goal_ratios(const struct policy_set *set, const struct replay_figures *f,
                        bool at_restores, size_t i, double out[N_GOALS]) {
        long by[N_GOALS] = { set->oracle, set->home, set->naive };
        for (int g = 0; g < N_GOALS; g++) {
                double num, den;
                if (by[g] < 0) {
                        out[g] = NAN;
                        continue;
                }
                num = g == GOAL_NAIVE ? (double)f[i].transfers : mean_of(&f[i], at_restores);
                den = g == GOAL_NAIVE ? (double)f[by[g]].transfers
                                      : mean_of(&f[by[g]], at_restores);
                out[g] = den > 0 ? num / den : NAN;
        }
}

/* Which swept settings meet each goal: what a sweep is run to find. */
static void print_sweep_goals(const struct policy_set *set, const struct replay_figures *f,
                              bool at_restores) {
        printf("\nthe swept settings that meet each goal:\n");
        for (int g = 0; g < N_GOALS; g++) {
                size_t met = 0, swept = 0;
                printf("  %s:", goal_words[g]);
                for (size_t i = 0; i < set->n; i++) {
                        double ratio[N_GOALS];
                        if (!set->swept[i])
                                continue;
                        swept++;
                        goal_ratios(set, f, at_restores, i, ratio);
                        if (ratio[g] <= goal_bounds[g]) {
                                printf("%s %s (%.3f)", met ? "," : "", set->v[i].name, ratio[g]);
                                met++;
                        }
                }
                printf("%s\n", met == 0 ? " none" : met == swept ? " (all of them)" : "");
        }
}

/* The figures as --json writes them and --publish posts them; NULL after saying why. */
static json_t *figures_json(const struct run *run, const struct replay_figures *f,
                            const bool *front, bool at_restores) {
        const struct policy_set *set = run->set;
        json_t *doc = NULL, *list = NULL;
        int r = 0;

        doc = json_pack(
                "{s:I, s:f, s:I, s:I, s:s, s:I, s:f, s:o}", "users",
                (json_int_t)replay_users(run->replay), "user_days", f[0].user_days, "reports",
                (json_int_t)run->reports, "restores", (json_int_t)run->restores, "measured_at",
                at_restores ? "restores" : "reports", "snapshot_bytes",
                (json_int_t)(strtod(run->o->snapshot_gib ? run->o->snapshot_gib : "10", NULL) *
                             GIB),
                "bandwidth_bps", strtod(run->o->bandwidth ? run->o->bandwidth : "12500000", NULL),
                "policies", list = json_array());
        for (size_t i = 0; doc && i < set->n; i++) {
                const struct engine_policy *p = &set->v[i].engine;
                static const char *const kinds[] = { "engine", "oracle", "home" };
                json_t *row = json_pack(
                        "{s:s, s:s, s:b, s:b, s:o, s:o, s:I, s:I, s:I, s:I, s:I, s:s?, s:I}",
                        "name", set->v[i].name, "kind", kinds[set->v[i].kind], "swept",
                        set->swept[i], "pareto", front[i], "restores",
                        distances_json(&f[i].restores), "reports", distances_json(&f[i].reports),
                        "transfers", (json_int_t)f[i].transfers, "arrived",
                        (json_int_t)f[i].arrived, "cancelled", (json_int_t)f[i].cancelled, "flaps",
                        (json_int_t)f[i].flaps, "bytes", (json_int_t)f[i].bytes, "peak_datacenter",
                        f[i].peak_site == SIZE_MAX ? NULL
                                                   : site_id(run->cv, (uint32_t)f[i].peak_site),
                        "peak_snapshots", (json_int_t)f[i].peak_snapshots);
                if (row && set->v[i].kind == REPLAY_ENGINE)
                        json_object_set_new(
                                row, "settings",
                                json_pack("{s:f, s:f, s:I, s:i, s:I, s:i, s:f}", "move_margin_m",
                                          p->margin_m, "move_margin_ratio", p->margin_ratio,
                                          "dwell_s", (json_int_t)(p->dwell_ms / 1000),
                                          "dwell_reports", p->min_reports, "cooldown_s",
                                          (json_int_t)(p->cooldown_ms / 1000), "max_moves_per_day",
                                          p->max_moves_per_day, "km_per_gib", p->km_per_gib));
                if (row && set->v[i].kind == REPLAY_ENGINE) {
                        double ratio[N_GOALS];
                        json_t *goals = json_object();
                        goal_ratios(set, f, at_restores, i, ratio);
                        for (int g = 0; goals && g < N_GOALS; g++)
                                if (isfinite(ratio[g]) &&
                                    json_object_set_new(goals, goal_names[g], json_real(ratio[g])) <
                                            0)
                                        r = -1;
                        if (json_object_set_new(row, "goals", goals) < 0)
                                r = -1;
                }
                if (row && set->v[i].prestage &&
                    json_object_set_new(
                            row, "prestage",
                            json_pack("{s:I, s:I, s:I, s:f, s:f}", "copies",
                                      (json_int_t)f[i].prestaged, "used",
                                      (json_int_t)f[i].prestage_used, "bytes",
                                      (json_int_t)f[i].prestage_bytes, "saved_km",
                                      set->homing >= 0 ? (mean_of(&f[set->homing], at_restores) -
                                                          mean_of(&f[i], at_restores)) /
                                                                 1000
                                                       : 0.0,
                                      "extra_bytes",
                                      set->homing >= 0
                                              ? (double)f[i].bytes - (double)f[set->homing].bytes
                                              : 0.0)) < 0)
                        r = -1;
                if (row && json_object_set_new(row, "peaks", peaks_json(run, i)) < 0)
                        r = -1;
                if (row && json_object_set_new(row, "transfers_per_day", days_json(run, i)) < 0)
                        r = -1;
                if (row && json_object_set_new(row, "per_day", per_day_json(run, i)) < 0)
                        r = -1;
                if (row &&
                    json_object_set_new(row, "restore_cdf", cdf_json(run, i, at_restores)) < 0)
                        r = -1;
                if (!row || json_array_append_new(list, row) < 0)
                        r = -1;
        }
        if (!doc || r < 0) {
                fprintf(stderr, PROG ": no memory for the figures\n");
                json_decref(doc);
                return NULL;
        }
        return doc;
}

/* ---- the pictures ---------------------------------------------------------------- */

#define PNG_W 960
#define PNG_H 600
#define FEW_SWEPT 6 /* a sweep this small is drawn whole in the per-policy pictures */

/* Whether the per-policy pictures draw policy i: all but a big sweep's points off the front. */
static bool drawn(const struct policy_set *set, const bool *front, size_t i) {
        size_t swept = 0;
        for (size_t j = 0; j < set->n; j++)
                swept += set->swept[j];
        return !set->swept[i] || swept <= FEW_SWEPT || front[i];
}

/* A policy's colour: the yardsticks and homing their own, the other policies
 * asked for (homing+prestage) hues the ramp does not use, the swept settings
 * drawn shades along a ramp, in the sweep's order, none twice. */
static uint32_t policy_color(const struct policy_set *set, const bool *front, size_t i) {
        static const size_t others[] = { 5, 8 }; /* brown, olive: off the ramp */
        size_t k = 0, n = 0;
        if ((long)i == set->oracle)
                return plot_color(2);
        if ((long)i == set->home)
                return plot_color(7);
        if ((long)i == set->naive)
                return plot_color(3);
        if ((long)i == set->homing)
                return plot_color(0);
        if (!set->swept[i]) {
                for (size_t j = 0; j < i; j++)
                        k += !set->swept[j] && (long)j != set->oracle && (long)j != set->home &&
                             (long)j != set->naive && (long)j != set->homing;
                return plot_color(others[k % (sizeof(others) / sizeof(others[0]))]);
        }
        for (size_t j = 0; j < set->n; j++)
                if (set->swept[j] && drawn(set, front, j)) {
                        k += j < i;
                        n++;
                }
        return plot_ramp(n > 1 ? (double)k / (double)(n - 1) : 0);
}

static int png_write(const struct run *run, const struct plot_chart *chart, const char *name) {
        char path[4096];
        int r;

        if (snprintf(path, sizeof(path), "%s/%s", run->o->png, name) >= (int)sizeof(path)) {
                fprintf(stderr, PROG ": --png %s: too long a path\n", run->o->png);
                return -1;
        }
        r = plot_png(chart, path);
        if (r < 0) {
                fprintf(stderr, PROG ": %s: cannot write the picture: %s\n", path, strerror(-r));
                return -1;
        }
        return 0;
}

/* Mean distance against bytes per user-day, every policy; the engine's Pareto front joined. */
static int picture_tradeoff(const struct run *run, const struct replay_figures *f,
                            const bool *front, bool at_restores) {
        const struct policy_set *set = run->set;
        double px[MAX_POLICIES], py[MAX_POLICIES], sx[MAX_POLICIES], sy[MAX_POLICIES];
        double fx[MAX_POLICIES], fy[MAX_POLICIES], days = f[0].user_days;
        const char *front_labels[MAX_POLICIES] = { 0 };
        struct plot_series s[MAX_POLICIES + 2];
        size_t n = 0, n_front = 0, n_swept = 0;

        for (size_t i = 0; i < set->n; i++) {
                px[i] = (double)f[i].bytes / GIB / (days > 0 ? days : 1);
                py[i] = km(mean_of(&f[i], at_restores));
                if (set->swept[i]) {
                        sx[n_swept] = px[i];
                        sy[n_swept++] = py[i];
                }
                if (front[i]) {
                        /* in order of bytes, so that its line runs along the front */
                        size_t k;
                        for (k = n_front; k > 0 && fx[k - 1] > px[i]; k--) {
                                fx[k] = fx[k - 1];
                                fy[k] = fy[k - 1];
                                front_labels[k] = front_labels[k - 1];
                        }
                        fx[k] = px[i];
                        fy[k] = py[i];
                        front_labels[k] = set->swept[i] ? set->v[i].name : NULL;
                        n_front++;
                }
        }
        /* the swept settings one series (those on the front named there); the others labelled */
        if (n_swept)
                s[n++] = (struct plot_series){ .name = "swept settings",
                                               .x = sx,
                                               .y = sy,
                                               .n = n_swept,
                                               .rgb = plot_color(1),
                                               .marker = PLOT_DOT };
        for (size_t i = 0; i < set->n; i++)
                if (!set->swept[i])
                        s[n++] = (struct plot_series){ .name = set->v[i].name,
                                                       .x = &px[i],
                                                       .y = &py[i],
                                                       .n = 1,
                                                       .rgb = policy_color(set, front, i),
                                                       .marker = PLOT_DOT,
                                                       .labels = &set->v[i].name };
        if (n_front > 0)
                s[n++] = (struct plot_series){ .name = "Pareto front (engine policies)",
                                               .x = fx,
                                               .y = fy,
                                               .n = n_front,
                                               .rgb = 0x222222,
                                               .line = true,
                                               .marker = PLOT_RING,
                                               .labels = front_labels };
        return png_write(run,
                         &(struct plot_chart){
                                 PNG_W, PNG_H,
                                 at_restores ? "Restore distance against bytes moved"
                                             : "Distance (at reports) against bytes moved",
                                 days > 0 ? "GiB sent per user-day" : "GiB sent",
                                 at_restores ? "mean restore distance, km"
                                             : "mean distance at reports, km",
                                 PLOT_LINEAR, PLOT_FIT, s, n },
                         "tradeoff.png");
}

/* The distances' distribution per policy: the 101 percentiles, on a log km axis. */
static int picture_distances(const struct run *run, const bool *front, bool at_restores) {
        const struct policy_set *set = run->set;
        double share[REPLAY_PERCENTILES];
        double(*m)[REPLAY_PERCENTILES] = calloc(MAX_POLICIES, sizeof(*m));
        struct plot_series s[MAX_POLICIES];
        size_t n = 0;
        int r;

        if (!m)
                return -1;
        for (int k = 0; k < REPLAY_PERCENTILES; k++)
                share[k] = k / 100.0;
        for (size_t i = 0; i < set->n; i++) {
                if (!drawn(set, front, i) ||
                    replay_percentiles(run->replay, i, at_restores, m[i]) == 0)
                        continue;
                for (int k = 0; k < REPLAY_PERCENTILES; k++)
                        m[i][k] = km(m[i][k]);
                s[n++] = (struct plot_series){ .name = set->v[i].name,
                                               .x = m[i],
                                               .y = share,
                                               .n = REPLAY_PERCENTILES,
                                               .rgb = policy_color(set, front, i),
                                               .line = true };
        }
        r = png_write(run,
                      &(struct plot_chart){
                              PNG_W, PNG_H,
                              at_restores ? "Restore distance, cumulative"
                                          : "Distance at credible reports, cumulative",
                              at_restores ? "restore distance, km (log scale; nearer than its "
                                            "first tick: on the left edge)"
                                          : "distance, km (log scale; nearer than its first "
                                            "tick: on the left edge)",
                              at_restores ? "share of restores at most this far"
                                          : "share of reports at most this far",
                              PLOT_LOG, PLOT_LINEAR, s, n },
                      "distances.png");
        free(m);
        return r;
}

/* Transfers queued on each simulated day, per policy, over the days any policy moved. */
static int picture_days(const struct run *run, const bool *front) {
        const struct policy_set *set = run->set;
        int64_t lo = INT64_MAX, hi = INT64_MIN, first;
        const uint32_t *counts;
        struct plot_series s[MAX_POLICIES];
        double *buf = NULL, *day;
        size_t n = 0, span = 0;
        int r;

        for (size_t i = 0; i < set->n; i++) {
                size_t d = replay_daily(run->replay, i, &first, &counts, NULL);
                if (d == 0)
                        continue;
                lo = first < lo ? first : lo;
                hi = first + (int64_t)d - 1 > hi ? first + (int64_t)d - 1 : hi;
        }
        if (lo <= hi)
                span = (size_t)(hi - lo) + 1;
        if (span && !(buf = calloc((set->n + 1) * span, sizeof(*buf))))
                return -1;
        day = buf;
        for (size_t k = 0; k < span; k++)
                day[k] = (double)(lo + (int64_t)k);
        for (size_t i = 0; i < set->n; i++) {
                double *y = buf ? buf + (i + 1) * span : NULL;
                size_t d = replay_daily(run->replay, i, &first, &counts, NULL);
                if (!drawn(set, front, i))
                        continue;
                for (size_t k = 0; y && k < d; k++) /* y is NULL only when no one moved */
                        y[first - lo + (int64_t)k] = counts[k];
                s[n++] = (struct plot_series){ .name = set->v[i].name,
                                               .x = day,
                                               .y = y,
                                               .n = span,
                                               .rgb = policy_color(set, front, i),
                                               .line = true,
                                               .marker = span <= 40 ? PLOT_DOT : PLOT_NONE };
        }
        r = png_write(run,
                      &(struct plot_chart){ PNG_W, PNG_H,
                                            "Transfers queued per day (the oracle's: its "
                                            "changes of site)",
                                            "day (UTC)", "transfers queued", PLOT_DAYS, PLOT_LINEAR,
                                            s, n },
                      "transfers-per-day.png");
        free(buf);
        return r;
}

/* The pictures to --png's directory. Returns 0, or -1 after saying what failed. */
static int write_pictures(const struct run *run, const struct replay_figures *f, const bool *front,
                          bool at_restores) {
        if (picture_tradeoff(run, f, front, at_restores) < 0 ||
            picture_distances(run, front, at_restores) < 0 || picture_days(run, front) < 0)
                return -1;
        return 0;
}

/* ---- publishing ------------------------------------------------------------------ */

struct answer {
        char text[4096];
        size_t len;
};

static size_t keep_answer(char *data, size_t size, size_t n, void *ctx) {
        struct answer *a = ctx;
        size_t room = sizeof(a->text) - 1 - a->len, take = size * n < room ? size * n : room;

        memcpy(a->text + a->len, data, take);
        a->len += take;
        a->text[a->len] = '\0';
        return size * n;
}

/* Posts the figures as a placement report named `name`: 0, or -1 after saying why. */
static int publish(const struct config *cfg, const char *name, const json_t *doc) {
        CURL *curl = curl_easy_init();
        char *body = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(10));
        char *escaped = curl ? curl_easy_escape(curl, name, 0) : NULL;
        size_t base = strlen(cfg->api_url);
        struct curl_slist *headers = NULL, *h;
        struct answer answer = { .len = 0 };
        char *url = NULL, *auth = NULL;
        json_t *got = NULL;
        long status = 0;
        CURLcode c = CURLE_OUT_OF_MEMORY;
        int r = -1;

        while (base > 0 && cfg->api_url[base - 1] == '/')
                base--;
        if (body && escaped &&
            asprintf(&url, "%.*s/v1/placement-reports?name=%s", (int)base, cfg->api_url, escaped) >=
                    0 &&
            asprintf(&auth, "Authorization: Bearer %s", cfg->operator_token) >= 0 &&
            (h = curl_slist_append(headers, auth)) && (headers = h) &&
            (h = curl_slist_append(headers, "Content-Type: application/json")) && (headers = h)) {
                curl_easy_setopt(curl, CURLOPT_URL, url);
                curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
                curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
                curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
                curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, keep_answer);
                curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer);
                curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);
                c = curl_easy_perform(curl);
                curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        }
        got = json_loads(answer.text, 0, NULL);
        if (c != CURLE_OK) {
                fprintf(stderr, PROG ": --publish: %s: %s\n", cfg->api_url, curl_easy_strerror(c));
        } else if (status != 201) {
                /* the API's problem says what it refused, and where in the figures */
                const char *detail = json_string_value(json_object_get(got, "detail"));
                json_t *first = json_array_get(json_object_get(got, "errors"), 0);
                const char *pointer = json_string_value(json_object_get(first, "pointer"));
                fprintf(stderr, PROG ": --publish: the API answered %ld: %s%s%s%s\n", status,
                        detail ? detail : "(no problem document)", pointer ? " (at " : "",
                        pointer ? pointer : "", pointer ? ")" : "");
        } else {
                printf("\npublished as placement report %lld, \"%s\": %.*s/v1/placement-reports/%lld\n",
                       (long long)json_integer_value(json_object_get(got, "id")), name, (int)base,
                       cfg->api_url, (long long)json_integer_value(json_object_get(got, "id")));
                r = 0;
        }
        json_decref(got);
        curl_slist_free_all(headers);
        free(auth);
        free(url);
        curl_free(escaped);
        free(body);
        curl_easy_cleanup(curl);
        return r;
}

/* Whether pre-staging pays: the distance it saved against homing, and what it sent. */
static void print_prestage(const struct run *run, const struct replay_figures *f,
                           bool at_restores) {
        const struct policy_set *set = run->set;
        const struct replay_figures *p = &f[set->prestage];

        printf("\npre-staging (%zu trips announced in the history, recurring ones found):\n",
               run->trips);
        if (set->homing >= 0) {
                double hm = mean_of(&f[set->homing], at_restores), pm = mean_of(p, at_restores);
                printf("  mean %s distance saved against homing: %.1f km (%.1f %%)\n",
                       at_restores ? "restore" : "report", (hm - pm) / 1000,
                       hm > 0 ? 100 * (hm - pm) / hm : 0.0);
                printf("  GiB sent against homing: %+.1f (%.1f in all, %.1f)\n",
                       ((double)p->bytes - (double)f[set->homing].bytes) / GIB,
                       (double)p->bytes / GIB, (double)f[set->homing].bytes / GIB);
        }
        printf("  copies pre-staged: %zu, %zu used (moved onto, or opened at a restore), %zu "
               "never; %.1f GiB sent for them, used or not\n",
               p->prestaged, p->prestage_used,
               p->prestaged >= p->prestage_used ? p->prestaged - p->prestage_used : 0,
               (double)p->prestage_bytes / GIB);
}

static int report(struct run *run, const struct config *cfg) {
        struct policy_set *set = run->set;
        struct replay_figures f[MAX_POLICIES] = { 0 };
        double x[MAX_POLICIES], y[MAX_POLICIES];
        bool front[MAX_POLICIES] = { 0 }, at_restores = run->restores > 0;
        size_t n_engine = 0, idx[MAX_POLICIES];

        for (size_t i = 0; i < set->n; i++)
                if (replay_figures(run->replay, i, &f[i]) < 0)
                        return -1;
        /* the front among the engine's policies: homing, the sweep, naive */
        for (size_t i = 0; i < set->n; i++)
                if (set->v[i].kind == REPLAY_ENGINE) {
                        const struct replay_distances *d =
                                at_restores ? &f[i].restores : &f[i].reports;
                        x[n_engine] = d->mean_m;
                        y[n_engine] = (double)f[i].bytes;
                        idx[n_engine++] = i;
                }
        {
                bool front_e[MAX_POLICIES];
                replay_pareto(x, y, n_engine, front_e);
                for (size_t k = 0; k < n_engine; k++)
                        front[idx[k]] = front_e[k];
        }

        printf("%zu users, %.0f user-days, %zu reports, %zu restores; snapshots of %s GiB, "
               "transfers at %s bytes/s\n\n",
               replay_users(run->replay), f[0].user_days, run->reports, run->restores,
               run->o->snapshot_gib ? run->o->snapshot_gib : "10",
               run->o->bandwidth ? run->o->bandwidth : "12500000");
        printf("| policy | %s | mean km | p50 km | p95 km | p99 km | transfers | cancelled | "
               "flapping | GiB sent | transfers/user-day | GiB/user-day | peak datacenter "
               "(snapshots) |\n",
               at_restores ? "restores" : "reports");
        printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
        for (size_t i = 0; i < set->n; i++)
                print_row(set->v[i].name, n_engine > 1 && front[i] ? " *" : "",
                          at_restores ? &f[i].restores : &f[i].reports, &f[i],
                          f[i].peak_site == SIZE_MAX ? "-"
                                                     : site_id(run->cv, (uint32_t)f[i].peak_site));
        if (!at_restores)
                printf("\n(no restores in this history: distances are measured at every "
                       "credible report)\n");
        if (n_engine > 1)
                printf("\n* on the Pareto front of mean distance against bytes sent, among the "
                       "engine's policies\n");
        if (set->homing >= 0) {
                const struct replay_figures *h = &f[set->homing];
                double hm = at_restores ? h->restores.mean_m : h->reports.mean_m;
                printf("\nhoming against the others (the issue's goals):\n");
                if (set->oracle >= 0) {
                        const struct replay_figures *o = &f[set->oracle];
                        double om = at_restores ? o->restores.mean_m : o->reports.mean_m;
                        if (om > 0)
                                goal("mean distance / the oracle's", hm / om, 1.5);
                }
                if (set->home >= 0) {
                        const struct replay_figures *o = &f[set->home];
                        double om = at_restores ? o->restores.mean_m : o->reports.mean_m;
                        if (om > 0)
                                goal("mean distance / fixed home's", hm / om, 0.5);
                }
                if (set->naive >= 0 && f[set->naive].transfers > 0)
                        goal("transfers / the naive policy's",
                             (double)h->transfers / (double)f[set->naive].transfers, 0.2);
        }
        if (set->homing >= 0 && set->oracle >= 0 && set->home >= 0 &&
            mean_of(&f[set->home], at_restores) > 0)
                /* no policy is nearer than the oracle: the least a policy's ratio can be */
                printf("  %-44s %6.3f  (no policy can be below it)\n",
                       "the oracle's mean distance / fixed home's",
                       mean_of(&f[set->oracle], at_restores) / mean_of(&f[set->home], at_restores));
        if (set->n > 0 && set->swept[set->n - 1] &&
            (set->oracle >= 0 || set->home >= 0 || set->naive >= 0))
                print_sweep_goals(set, f, at_restores);

        if (set->prestage >= 0)
                print_prestage(run, f, at_restores);

        if (run->o->json || run->o->publish) {
                json_t *doc = figures_json(run, f, front, at_restores);
                int r = doc ? 0 : -1;

                if (doc && run->o->json &&
                    json_dump_file(doc, run->o->json, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) <
                            0) {
                        fprintf(stderr, PROG ": %s: cannot write the figures\n", run->o->json);
                        r = -1;
                }
                if (r == 0 && run->o->publish)
                        r = publish(cfg, run->o->publish, doc);
                json_decref(doc);
                if (r < 0)
                        return -1;
        }
        if (run->o->png && write_pictures(run, f, front, at_restores) < 0)
                return -1;
        return 0;
}

/* ---- the command ---------------------------------------------------------------- */

static int parse_time(const char *flag, const char *text, int64_t *out) {
        if (text && report_parse_time(text, out) < 0) {
                fprintf(stderr, PROG ": %s wants an RFC 3339 time, not '%s'\n", flag, text);
                return -1;
        }
        return 0;
}

static int parse_positive(const char *flag, const char *text, double dflt, double *out) {
        char *end;
        *out = dflt;
        if (!text)
                return 0;
        *out = strtod(text, &end);
        if (!*text || *end || !isfinite(*out) || *out <= 0) {
                fprintf(stderr, PROG ": %s wants a number above 0, not '%s'\n", flag, text);
                return -1;
        }
        return 0;
}

static int options_check(struct options *o, double *gib, double *bandwidth) {
        if (!o->history) {
                fprintf(stderr, PROG ": --history FILE or --history kafka is needed\n");
                return -1;
        }
        if (o->offsets) {
                long long from, to;
                char tail;
                if (strcmp(o->history, "kafka") != 0 ||
                    sscanf(o->offsets, "%lld:%lld%c", &from, &to, &tail) != 2 || from < 0 ||
                    to < 0 || (to > 0 && to <= from)) {
                        fprintf(stderr,
                                PROG ": --offsets FROM:TO (TO above FROM, or 0 for the end) is "
                                     "for --history kafka\n");
                        return -1;
                }
                o->from_offset = from;
                o->to_offset = to;
        }
        if (parse_time("--since", o->since, &o->since_ms) < 0 ||
            parse_time("--until", o->until, &o->until_ms) < 0 ||
            parse_positive("--snapshot-gib", o->snapshot_gib, 10, gib) < 0 ||
            parse_positive("--bandwidth", o->bandwidth, 12500000, bandwidth) < 0 ||
            parse_positive("--prestage-lead-s", o->prestage_lead_s, 3600, &o->lead_s) < 0 ||
            parse_positive("--prestage-min-weeks", o->prestage_min_weeks, 2, &o->min_weeks) < 0)
                return -1;
        if (o->min_weeks != floor(o->min_weeks) || o->min_weeks > 4) {
                fprintf(stderr, PROG ": --prestage-min-weeks wants 1 to 4\n");
                return -1;
        }
        o->delta = 0.02;
        if (o->delta_share) {
                char *end;
                o->delta = strtod(o->delta_share, &end);
                if (!*o->delta_share || *end || !(o->delta >= 0 && o->delta <= 1)) {
                        fprintf(stderr, PROG ": --delta-share wants a share from 0 to 1\n");
                        return -1;
                }
        }
        if ((o->sweep_x && sweep_parse("--sweep-x", o->sweep_x, &o->x) < 0) ||
            (o->sweep_y && sweep_parse("--sweep-y", o->sweep_y, &o->y) < 0))
                return -1;
        if (o->sweep_y && !o->sweep_x) {
                fprintf(stderr, PROG ": --sweep-y goes with --sweep-x\n");
                return -1;
        }
        return 0;
}

/* --png's directory, made if missing (*made), can take a file: known before the replay
 * runs, not after it. Returns 0, or -1 after saying why not. */
static int png_dir_check(const char *dir, bool *made) {
        char probe[4096];
        int fd;

        *made = mkdir(dir, 0777) == 0;
        if (!*made && errno != EEXIST) {
                fprintf(stderr, PROG ": --png %s: %s\n", dir, strerror(errno));
                return -1;
        }
        if (snprintf(probe, sizeof(probe), "%s/.homing-replay-XXXXXX", dir) >= (int)sizeof(probe)) {
                fprintf(stderr, PROG ": --png %s: too long a path\n", dir);
                return -1;
        }
        fd = mkstemp(probe);
        if (fd < 0) {
                fprintf(stderr, PROG ": --png %s: cannot write there: %s\n", dir, strerror(errno));
                return -1;
        }
        close(fd);
        unlink(probe);
        return 0;
}

int cmd_replay(int argc, char **argv) {
        struct options o = { 0 };
        const struct cmd_flag flags[] = {
                { "--history", &o.history },
                { "--offsets", &o.offsets },
                { "--since", &o.since },
                { "--until", &o.until },
                { "--catalog", &o.catalog },
                { "--policies", &o.policies },
                { "--sweep-x", &o.sweep_x },
                { "--sweep-y", &o.sweep_y },
                { "--snapshot-gib", &o.snapshot_gib },
                { "--bandwidth", &o.bandwidth },
                { "--json", &o.json },
                { "--events", &o.events },
                { "--publish", &o.publish },
                { "--png", &o.png },
                { "--prestage-lead-s", &o.prestage_lead_s },
                { "--prestage-min-weeks", &o.prestage_min_weeks },
                { "--delta-share", &o.delta_share },
                { NULL, NULL },
        };
        struct config cfg = { 0 };
        struct engine_policy homing;
        struct policy_set set = { 0 };
        struct catalog_view cv = { 0 };
        struct replay_params params;
        struct run run = { .o = &o, .cv = &cv, .set = &set };
        double gib, bandwidth;
        bool png_made = false;
        int rest, r, status = 1;

        if (cmd_take_flags("replay", argc, argv, flags, &rest) < 0)
                return 2;
        r = config_load(&cfg, rest, argv, usage);
        if (r == 1)
                return 0;
        if (r < 0)
                return 2;
        if (options_check(&o, &gib, &bandwidth) < 0) {
                config_fini(&cfg);
                return 2;
        }
        /* before the run, which may be long: a publish that cannot work is said at once */
        if (o.publish && (!*o.publish || !cfg.operator_token[0])) {
                fprintf(stderr, PROG ": --publish NAME needs a name and an operator token "
                                     "(HOMING_OPERATOR_TOKEN or --operator-token)\n");
                config_fini(&cfg);
                return 2;
        }
        scheduler_policy_from_config(&homing, &cfg);
        if (policies_build(&o, &homing, &set) < 0) {
                config_fini(&cfg);
                return 2;
        }
        if (catalog_open(&cfg, o.catalog, &cv) < 0)
                goto out;
        if (o.png && png_dir_check(o.png, &png_made) < 0)
                goto out;
        if (o.events && !(run.events = fopen(o.events, "w"))) {
                fprintf(stderr, PROG ": %s: %s\n", o.events, strerror(errno));
                goto out;
        }
        params = (struct replay_params){ .snapshot_bytes = (uint64_t)(gib * GIB),
                                         .bandwidth_bps = bandwidth };
        engine_prestage_defaults(&params.prestage);
        params.prestage.lead_ms = (int64_t)(o.lead_s * 1000);
        params.prestage.min_weeks = (int32_t)o.min_weeks;
        params.delta_share = o.delta;
        r = replay_new(cv.use, &params, set.v, set.n, on_event, &run, &run.replay);
        if (r < 0) {
                fprintf(stderr, PROG ": %s\n", strerror(-r));
                goto out;
        }
        r = strcmp(o.history, "kafka") ? history_file(&run, o.history) : history_topic(&run, &cfg);
        if (r < 0)
                goto out;
        if (run.skipped || run.outside)
                fprintf(stderr,
                        PROG ": %zu records were not location reports (skipped), %zu outside "
                             "--since/--until\n",
                        run.skipped, run.outside);
        if (run.events && (fflush(run.events) != 0 || run.events_failed)) {
                fprintf(stderr, PROG ": %s: cannot write the events\n", o.events);
                goto out;
        }
        if (report(&run, &cfg) < 0)
                goto out;
        status = 0;
out:
        if (run.events && fclose(run.events) != 0 && status == 0) {
                fprintf(stderr, PROG ": %s: %s\n", o.events, strerror(errno));
                status = 1;
        }
        run.replay = replay_free(run.replay);
        if (o.png)
                plot_fini();
        if (status != 0 && png_made)
                rmdir(o.png); /* made for a run that failed: gone again, if still empty */
        catalog_close(&cv);
        config_fini(&cfg);
        return status;
}
