/* Replay on small hand-made histories whose answers are known. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "geo/geo.h"
#include "replay/replay.h"
#include "report/report.h"
#include "tap.h"

#define MIN_MS (60 * 1000LL)
#define HOUR_MS (60 * MIN_MS)
#define GIB 1073741824ULL
#define T0 1767571200000LL /* 2026-01-05T00:00:00Z */

/* Three cities on the equator, 2° (222 km) apart, a datacenter on each. */
enum { X, Y, Z, N_SITES };
static const double lon_of[N_SITES] = { 0, 2, 4 };

struct world {
        geo_index *index;
        struct engine_zone_set anywhere;
        struct engine_context ctx;
};

static void world_init(struct world *w) {
        geo_site sites[N_SITES] = {
                { "x", 0, 0, GEO_SITE_ACTIVE, 1000 * GIB },
                { "y", 0, 2, GEO_SITE_ACTIVE, 1000 * GIB },
                { "z", 0, 4, GEO_SITE_ACTIVE, 1000 * GIB },
        };
        memset(w, 0, sizeof(*w));
        if (geo_index_new(&w->index, sites, N_SITES, NULL, 0) < 0)
                abort();
        w->ctx = (struct engine_context){ w->index, NULL, 0, &w->anywhere, 1 };
}

enum { ORACLE, HOME, NAIVE, DWELL2H, N_POLICIES };

struct run {
        struct world w;
        struct replay *r;
        struct replay_event events[64];
        int reasons[64]; /* the decision's (borrowed for the call only), or -1 */
        size_t n_events;
};

static void on_event(void *ctx, const struct replay_event *e) {
        struct run *run = ctx;
        if (run->n_events < 64) {
                run->reasons[run->n_events] = e->decision ? (int)e->decision->reason : -1;
                run->events[run->n_events++] = *e;
        }
}

/* 10 GiB snapshots over `bandwidth` bytes a second. */
static void run_init_at(struct run *run, double bandwidth) {
        struct replay_policy p[N_POLICIES] = {
                { .name = "oracle", .kind = REPLAY_ORACLE },
                { .name = "home", .kind = REPLAY_HOME },
                { .name = "naive", .kind = REPLAY_ENGINE },
                { .name = "dwell-2h", .kind = REPLAY_ENGINE },
        };
        struct replay_params params = { .snapshot_bytes = 10 * GIB, .bandwidth_bps = bandwidth };

        memset(run, 0, sizeof(*run));
        world_init(&run->w);
        for (int i = 0; i < N_POLICIES; i++)
                engine_policy_defaults(&p[i].engine);
        replay_naive(&p[NAIVE].engine);
        p[DWELL2H].engine.dwell_ms = 2 * HOUR_MS;
        p[DWELL2H].engine.min_reports = 1;
        if (replay_new(&run->w.ctx, &params, p, N_POLICIES, on_event, run, &run->r) < 0)
                abort();
}

/* Over 1 GiB/s: a transfer takes 10 s. */
static void run_init(struct run *run) {
        run_init_at(run, (double)GIB);
}

static void run_fini(struct run *run) {
        run->r = replay_free(run->r);
        geo_index_unref(run->w.index);
}

static int report_at(struct run *run, int city, int64_t ts_ms) {
        struct report rep = { .lat = 0,
                              .lon = lon_of[city],
                              .accuracy_m = 10,
                              .ts_ms = ts_ms,
                              .received_ms = ts_ms + 1000 };
        strcpy(rep.user_id, "u-1");
        strcpy(rep.device_id, "d-1");
        return replay_report(run->r, &rep);
}

static struct replay_figures figures(struct run *run, int policy) {
        struct replay_figures f;
        if (replay_figures(run->r, (size_t)policy, &f) < 0)
                abort();
        return f;
}

TEST(bad_params_are_refused) {
        struct world w;
        struct replay *r = NULL;
        struct replay_policy p = { .name = "home", .kind = REPLAY_HOME };
        struct replay_params zero_size = { .bandwidth_bps = 1e6 },
                             no_bandwidth = { .snapshot_bytes = GIB };

        world_init(&w);
        CHECK(replay_new(&w.ctx, &zero_size, &p, 1, NULL, NULL, &r) == -EINVAL);
        CHECK(replay_new(&w.ctx, &no_bandwidth, &p, 1, NULL, NULL, &r) == -EINVAL);
        CHECK(replay_new(&w.ctx,
                         &(struct replay_params){ .snapshot_bytes = GIB, .bandwidth_bps = 1e6 }, &p,
                         0, NULL, NULL, &r) == -EINVAL);
        CHECK(r == NULL);
        geo_index_unref(w.index);
}

/* A datacenter on every city: the oracle's restores are all at distance 0;
 * fixed home's are the distance from home; a restore of a user never seen is ignored. */
TEST(oracle_is_zero_and_home_is_the_distance_from_home) {
        struct run run;
        struct replay_figures f;
        double xy = geo_distance_m(0, 0, 0, 2), xz = geo_distance_m(0, 0, 0, 4);

        run_init(&run);
        CHECK(report_at(&run, X, T0) == 0);
        CHECK(replay_restore(run.r, "u-1", 0, 0, T0 + HOUR_MS) == 0);
        CHECK(report_at(&run, Y, T0 + 3 * HOUR_MS) == 0);
        CHECK(replay_restore(run.r, "u-1", 0, 2, T0 + 4 * HOUR_MS) == 0);
        CHECK(report_at(&run, Z, T0 + 6 * HOUR_MS) == 0);
        CHECK(replay_restore(run.r, "u-1", 0, 4, T0 + 7 * HOUR_MS) == 0);
        CHECK(replay_restore(run.r, "u-2", 0, 4, T0 + 7 * HOUR_MS) == 1);
        CHECK(replay_users(run.r) == 1);

        f = figures(&run, ORACLE);
        CHECK(f.restores.n == 3);
        CHECK(f.restores.mean_m == 0 && f.restores.p99_m == 0);
        CHECK(f.transfers == 2); /* to y, to z: instantly */
        f = figures(&run, HOME);
        CHECK(f.restores.n == 3);
        CHECK_NEAR(f.restores.mean_m, (0 + xy + xz) / 3, 1e-6);
        CHECK_NEAR(f.restores.p50_m, xy, xy * 0.005);
        CHECK_NEAR(f.restores.p99_m, xz, xz * 0.005);
        CHECK(f.transfers == 0 && f.bytes == 0);
        CHECK(f.peak_site == X && f.peak_snapshots == 1);
        CHECK_NEAR(f.user_days, 0.25, 1e-9); /* one user, reports over 6 h */
        CHECK(replay_figures(run.r, N_POLICIES, &f) == -EINVAL);
        run_fini(&run);
}

/* A one-hour trip: a 2-hour dwell does not move; the naive policy goes and comes back. */
TEST(a_two_hour_dwell_does_not_move_for_a_one_hour_trip) {
        struct run run;
        struct replay_figures naive, dwell;

        run_init(&run);
        CHECK(report_at(&run, X, T0) == 0);
        for (int i = 0; i <= 6; i++) /* at y from T0 + 1 h for an hour, every 10 min */
                CHECK(report_at(&run, Y, T0 + HOUR_MS + i * 10 * MIN_MS) == 0);
        CHECK(replay_restore(run.r, "u-1", 0, 2, T0 + 2 * HOUR_MS) == 0);
        CHECK(report_at(&run, X, T0 + 3 * HOUR_MS) == 0);
        CHECK(replay_restore(run.r, "u-1", 0, 0, T0 + 4 * HOUR_MS) == 0);

        dwell = figures(&run, DWELL2H);
        CHECK(dwell.transfers == 0 && dwell.bytes == 0);
        CHECK_NEAR(dwell.restores.mean_m, geo_distance_m(0, 0, 0, 2) / 2, 1e-6);
        naive = figures(&run, NAIVE);
        CHECK(naive.transfers == 2 && naive.arrived == 2);
        {
                const uint32_t *days;
                int64_t first;
                CHECK(replay_daily(run.r, NAIVE, &first, &days, NULL) == 1);
                CHECK(first == T0 / (24 * HOUR_MS) && days[0] == 2);
                CHECK(replay_daily(run.r, DWELL2H, &first, &days, NULL) == 0);
        }
        CHECK(replay_site_peak(run.r, NAIVE, X) == 1 && replay_site_peak(run.r, NAIVE, Y) == 1);
        CHECK(replay_site_peak(run.r, DWELL2H, Y) == 0 && replay_site_peak(run.r, 99, X) == 0);
        CHECK(naive.flaps == 1); /* back to x within the day */
        CHECK(naive.bytes == 20 * GIB);
        CHECK(naive.restores.mean_m == 0);
        run_fini(&run);
}

/* A move's transfer takes size ÷ bandwidth: 10 s. Until then the copy is at home. */
TEST(a_transfer_takes_size_over_bandwidth) {
        struct run run;
        struct replay_figures f;
        double xy = geo_distance_m(0, 0, 0, 2);
        const struct replay_event *e;

        run_init(&run);
        CHECK(report_at(&run, X, T0) == 0);
        CHECK(report_at(&run, Y, T0 + HOUR_MS) == 0); /* naive queues x -> y */
        CHECK(run.n_events == 1);
        e = &run.events[0];
        CHECK(e->kind == REPLAY_QUEUED && e->policy == NAIVE && e->from == X && e->to == Y);
        CHECK(e->bytes == 10 * GIB && e->arrives_ms == T0 + HOUR_MS + 10000);
        CHECK(run.reasons[0] == ENGINE_CLOSER);
        CHECK(replay_restore(run.r, "u-1", 0, 2, T0 + HOUR_MS + 9999) == 0);
        CHECK(run.n_events == 1);
        CHECK(replay_restore(run.r, "u-1", 0, 2, T0 + HOUR_MS + 10000) == 0);
        CHECK(run.n_events == 2);
        e = &run.events[1];
        CHECK(e->kind == REPLAY_ARRIVED && e->to == Y && e->ts_ms == T0 + HOUR_MS + 10000);
        f = figures(&run, NAIVE);
        CHECK(f.restores.n == 2);
        CHECK_NEAR(f.restores.mean_m, xy / 2, 1e-6); /* one at x's distance, one at 0 */
        CHECK(f.peak_site == X || f.peak_site == Y);
        CHECK(f.peak_snapshots == 1);
        run_fini(&run);
}

/* A move superseded before it arrives counts only what it sent. */
TEST(a_superseded_transfer_counts_what_it_sent) {
        struct run run;
        struct replay_figures f;

        run_init_at(&run, 10.0 * GIB / 3600); /* a transfer takes an hour */
        CHECK(report_at(&run, X, T0) == 0);
        CHECK(report_at(&run, Y, T0 + HOUR_MS) == 0);               /* x -> y, until T0 + 2 h */
        CHECK(report_at(&run, Z, T0 + HOUR_MS + 30 * MIN_MS) == 0); /* half sent: x -> z */
        f = figures(&run, NAIVE);
        CHECK(f.transfers == 2 && f.cancelled == 1 && f.arrived == 0);
        CHECK(f.bytes == 5 * GIB + 10 * GIB);
        CHECK(run.n_events == 3 && run.events[1].kind == REPLAY_CANCELLED);
        CHECK(run.events[1].to == Y && run.events[1].bytes == 5 * GIB);
        CHECK(replay_restore(run.r, "u-1", 0, 4, T0 + 2 * HOUR_MS + 30 * MIN_MS) == 0);
        f = figures(&run, NAIVE);
        CHECK(f.arrived == 1 && f.restores.mean_m == 0);
        run_fini(&run);
}

/* A bandwidth near 0: the transfer never arrives (and its time does not overflow). */
TEST(a_transfer_at_almost_no_bandwidth_never_arrives) {
        struct run run;
        struct replay_figures f;

        run_init_at(&run, 1e-6);
        CHECK(report_at(&run, X, T0) == 0);
        CHECK(report_at(&run, Y, T0 + HOUR_MS) == 0);
        CHECK(run.n_events == 1 && run.events[0].arrives_ms == INT64_MAX);
        CHECK(replay_restore(run.r, "u-1", 0, 2, T0 + 1000 * 24 * HOUR_MS) == 0);
        f = figures(&run, NAIVE);
        CHECK(f.transfers == 1 && f.arrived == 0);
        CHECK_NEAR(f.restores.mean_m, geo_distance_m(0, 0, 0, 2), 1e-6);
        run_fini(&run);
}

/* Days are counted from the earliest, whatever order the moves come in. */
TEST(transfers_are_counted_by_day_in_any_order) {
        struct run run;
        struct report rep = { .lat = 0, .lon = 2, .accuracy_m = 10 };
        const uint32_t *days;
        int64_t first;

        run_init(&run);
        strcpy(rep.device_id, "d-a");
        strcpy(rep.user_id, "u-a");
        rep.ts_ms = rep.received_ms = T0 + 2 * 24 * HOUR_MS; /* first seen at y, day 2 */
        CHECK(replay_report(run.r, &rep) == 0);
        rep.lon = 0;
        rep.ts_ms = rep.received_ms = T0 + 3 * 24 * HOUR_MS; /* x on day 3: a move */
        CHECK(replay_report(run.r, &rep) == 0);
        strcpy(rep.device_id, "d-b"); /* another user, from an earlier day */
        strcpy(rep.user_id, "u-b");
        rep.ts_ms = rep.received_ms = T0;
        CHECK(replay_report(run.r, &rep) == 0);
        rep.lon = 4;
        rep.ts_ms = rep.received_ms = T0 + 12 * HOUR_MS;
        CHECK(replay_report(run.r, &rep) == 0);
        CHECK(replay_daily(run.r, NAIVE, &first, &days, NULL) == 4);
        CHECK(first == T0 / (24 * HOUR_MS));
        CHECK(days[0] == 1 && days[1] == 0 && days[2] == 0 && days[3] == 1);
        run_fini(&run);
}

/* A day's bytes are what its transfers sent: a transfer queued late on one day and
 * superseded half way on the next counts half its bytes on the day it was queued. */
TEST(a_day_s_bytes_are_what_its_transfers_sent) {
        struct run run;
        struct replay_figures f;
        const uint32_t *transfers;
        const uint64_t *bytes;
        int64_t first;

        run_init_at(&run, 10.0 * GIB / 3600); /* a transfer takes an hour */
        CHECK(report_at(&run, X, T0 + 23 * HOUR_MS) == 0);
        CHECK(report_at(&run, Y, T0 + 23 * HOUR_MS + 30 * MIN_MS) == 0); /* day 0: x -> y */
        CHECK(report_at(&run, Z, T0 + 24 * HOUR_MS) == 0); /* day 1, half sent: x -> z */
        f = figures(&run, NAIVE);
        CHECK(f.transfers == 2 && f.cancelled == 1 && f.bytes == 15 * GIB);
        CHECK(replay_daily(run.r, NAIVE, &first, &transfers, &bytes) == 2);
        CHECK(first == T0 / (24 * HOUR_MS));
        CHECK(transfers[0] == 1 && bytes[0] == 5 * GIB);
        CHECK(transfers[1] == 1 && bytes[1] == 10 * GIB);
        /* the oracle's site changes, each a whole snapshot */
        CHECK(replay_daily(run.r, ORACLE, &first, &transfers, &bytes) == 2);
        CHECK(transfers[0] == 1 && bytes[0] == 10 * GIB && bytes[1] == 10 * GIB);
        run_fini(&run);
}

/* The percentiles are the figures' own (the same bins), from the nearest to the farthest. */
TEST(percentiles_are_the_figures_bins) {
        struct run run;
        struct replay_figures f;
        double m[REPLAY_PERCENTILES], xz = geo_distance_m(0, 0, 0, 4);

        run_init(&run);
        CHECK(report_at(&run, X, T0) == 0);
        CHECK(replay_percentiles(run.r, HOME, true, m) == 0); /* no restore yet */
        for (int i = 0; i < 10; i++)                          /* home is x: 0, 222 and 444 km */
                CHECK(replay_restore(run.r, "u-1", 0, lon_of[i % 3], T0 + i * MIN_MS) == 0);
        f = figures(&run, HOME);
        CHECK(replay_percentiles(run.r, HOME, true, m) == 10);
        CHECK(m[0] == 0);
        CHECK_NEAR(m[100], xz, 0.005 * xz);
        CHECK(m[50] == f.restores.p50_m && m[95] == f.restores.p95_m && m[99] == f.restores.p99_m);
        for (int k = 1; k < REPLAY_PERCENTILES; k++)
                CHECK(m[k] >= m[k - 1]);
        CHECK(replay_percentiles(run.r, HOME, false, m) == 1); /* the one report, at home */
        CHECK(m[0] == 0 && m[100] == 0);
        CHECK(replay_percentiles(run.r, N_POLICIES, true, m) == 0);
        run_fini(&run);
}

/* Policies judge reports by their own credibility rules, those with the same rules alike
 * (the replay judges a report once for them): too coarse a fix for one, too fast a hop for
 * another, two naive policies that both move. */
TEST(each_policy_judges_reports_by_its_own_rules) {
        struct world w;
        struct replay *r = NULL;
        struct replay_policy p[4] = {
                { .name = "fine", .kind = REPLAY_ENGINE },
                { .name = "naive", .kind = REPLAY_ENGINE },
                { .name = "naive-too", .kind = REPLAY_ENGINE },
                { .name = "slow", .kind = REPLAY_ENGINE },
        };
        struct replay_figures f[4];
        struct report rep = { .lat = 0, .accuracy_m = 10 };
        const int city[3] = { X, Y, Y };
        const int64_t at[3] = { T0, T0 + 3 * HOUR_MS, T0 + 4 * HOUR_MS };

        world_init(&w);
        for (int i = 0; i < 4; i++) {
                engine_policy_defaults(&p[i].engine);
                replay_naive(&p[i].engine);
        }
        p[0].engine.max_accuracy_m = 5;
        p[3].engine.max_speed_mps = 1; /* 222 km in 3 h is 20 m/s */
        CHECK(replay_new(&w.ctx,
                         &(struct replay_params){ .snapshot_bytes = 10 * GIB,
                                                  .bandwidth_bps = (double)GIB },
                         p, 4, NULL, NULL, &r) == 0);
        strcpy(rep.user_id, "u-1");
        strcpy(rep.device_id, "d-1");
        for (int k = 0; k < 3; k++) {
                rep.lon = lon_of[city[k]];
                rep.ts_ms = at[k];
                rep.received_ms = at[k] + 1000;
                CHECK(replay_report(r, &rep) == 0);
        }
        for (int i = 0; i < 4; i++)
                CHECK(replay_figures(r, (size_t)i, &f[i]) == 0);
        CHECK(f[0].reports.n == 0 && f[0].transfers == 0);
        CHECK(f[1].reports.n == 3 && f[1].transfers == 1);
        CHECK(f[2].reports.n == 3 && f[2].transfers == 1);
        CHECK(f[3].reports.n == 1 && f[3].transfers == 0);
        r = replay_free(r);
        geo_index_unref(w.index);
}

TEST(pareto_front_keeps_the_undominated) {
        double x[] = { 1, 2, 3, 2, 1 }, y[] = { 5, 3, 1, 4, 5 };
        bool front[5];
        replay_pareto(x, y, 5, front);
        CHECK(front[0] && front[1] && front[2]);
        CHECK(!front[3]); /* (2, 3) beats (2, 4) */
        CHECK(front[4]);  /* equal to a front point, not beaten by it */
}

/*
 * Pre-staging, on two users of the default homing policy over 1 GiB/s. u-1
 * lives at x and announces a trip to z (445 km): landing a day later, back
 * two days later. Hourly reports at x, the flight (no reports), a report at
 * z 10 minutes after landing and a restore there 20 minutes after: homing
 * has not moved yet (one report is not a stay), so its restore is 445 km
 * away; the copy pre-staged at z an hour before the arrival is opened, 0 km
 * away, for a delta of 1 % (0.1 GiB). u-2 announces a trip to y it never
 * takes: its copy is made, never used and released at its return.
 */
TEST(a_copy_staged_for_an_announced_trip_serves_the_restore_at_the_destination) {
        struct world w;
        struct replay_policy p[2] = {
                { .name = "homing", .kind = REPLAY_ENGINE },
                { .name = "homing+prestage", .kind = REPLAY_ENGINE, .prestage = true },
        };
        struct replay_params params = { .snapshot_bytes = 10 * GIB,
                                        .bandwidth_bps = (double)GIB,
                                        .delta_share = 0.01 };
        struct engine_trip to_z = { 0, 4, T0 + 24 * HOUR_MS, T0 + 48 * HOUR_MS };
        struct engine_trip to_y = { 0, 2, T0 + 24 * HOUR_MS, T0 + 30 * HOUR_MS };
        struct replay_figures h, ps;
        struct replay *r;
        struct report rep = { .lat = 0, .accuracy_m = 10 };

        world_init(&w);
        engine_policy_defaults(&p[0].engine);
        p[1].engine = p[0].engine;
        engine_prestage_defaults(&params.prestage);
        CHECK(replay_new(&w.ctx, &params, p, 2, NULL, NULL, &r) == 0);
        strcpy(rep.device_id, "d-1");
        strcpy(rep.user_id, "u-1");
        CHECK(replay_trip(r, "u-1", &to_z, T0) == 0);
        CHECK(replay_trip(r, "u-2", &to_y, T0) == 0);
        for (int hour = 0; hour <= 20; hour++) {
                rep.lon = 0;
                rep.ts_ms = T0 + hour * HOUR_MS;
                rep.received_ms = rep.ts_ms + 1000;
                strcpy(rep.device_id, "d-1");
                strcpy(rep.user_id, "u-1");
                CHECK(replay_report(r, &rep) == 0);
                strcpy(rep.device_id, "d-2");
                strcpy(rep.user_id, "u-2");
                CHECK(replay_report(r, &rep) == 0);
        }
        strcpy(rep.device_id, "d-1");
        strcpy(rep.user_id, "u-1");
        rep.lon = 4;
        rep.ts_ms = T0 + 24 * HOUR_MS + 10 * MIN_MS;
        rep.received_ms = rep.ts_ms + 1000;
        CHECK(replay_report(r, &rep) == 0);
        CHECK(replay_restore(r, "u-1", 0, 4, T0 + 24 * HOUR_MS + 20 * MIN_MS) == 0);
        /* u-2 stays home past its trip's return: its copy is released unused */
        strcpy(rep.device_id, "d-2");
        strcpy(rep.user_id, "u-2");
        rep.lon = 0;
        rep.ts_ms = T0 + 31 * HOUR_MS;
        rep.received_ms = rep.ts_ms + 1000;
        CHECK(replay_report(r, &rep) == 0);
        CHECK(replay_restore(r, "u-2", 0, 0, T0 + 32 * HOUR_MS) == 0);

        CHECK(replay_figures(r, 0, &h) == 0 && replay_figures(r, 1, &ps) == 0);
        CHECK(h.restores.n == 2 && ps.restores.n == 2);
        /* homing: 445 km and 0; pre-staged: 0 and 0 */
        CHECK(fabs(h.restores.mean_m - 222639 * 2 / 2.0) < 2000);
        CHECK(ps.restores.mean_m < 1);
        CHECK(h.prestaged == 0 && h.prestage_bytes == 0);
        CHECK(ps.prestaged == 2 && ps.prestage_used == 1);
        CHECK(ps.prestage_bytes == 20 * GIB);
        CHECK(ps.bytes == 20 * GIB + (uint64_t)(0.01 * 10 * GIB));
        CHECK(h.bytes == 0 && h.transfers == 0);
        CHECK(ps.transfers == 1);
        /* the copy is released at u-2's return: a report after it stages nothing more */
        rep.ts_ms = T0 + 40 * HOUR_MS;
        rep.received_ms = rep.ts_ms + 1000;
        CHECK(replay_report(r, &rep) == 0);
        CHECK(replay_figures(r, 1, &ps) == 0 && ps.prestaged == 2);
        /* a trip that returns before it lands is refused */
        to_y.return_ms = to_y.arrive_ms;
        CHECK(replay_trip(r, "u-2", &to_y, T0) == -EINVAL);
        r = replay_free(r);
        geo_index_unref(w.index);
}

/*
 * The move on arrival onto a complete warm copy is weighed at what the copy
 * lacks, as the live scheduler weighs a move onto any verified copy: at 100
 * km per GiB the whole 10 GiB snapshot (1,000 km) does not pay for x to z
 * (445 km), its 1 % delta does. u-1 reports hourly at x, the copy at z is
 * staged at the report an hour before landing, and the first report at z
 * moves homing+prestage (0.1 GiB) and holds homing (not worth it).
 */
TEST(a_move_onto_a_complete_warm_copy_pays_for_what_it_lacks_only) {
        struct world w;
        struct replay_policy p[2] = {
                { .name = "homing", .kind = REPLAY_ENGINE },
                { .name = "homing+prestage", .kind = REPLAY_ENGINE, .prestage = true },
        };
        struct replay_params params = { .snapshot_bytes = 10 * GIB,
                                        .bandwidth_bps = (double)GIB,
                                        .delta_share = 0.01 };
        struct engine_trip to_z = { 0, 4, T0 + 24 * HOUR_MS, T0 + 48 * HOUR_MS };
        struct report rep = { .lat = 0, .accuracy_m = 10 };
        struct run run;

        memset(&run, 0, sizeof(run));
        world_init(&w);
        engine_policy_defaults(&p[0].engine);
        p[0].engine.dwell_ms = 0;
        p[0].engine.min_reports = 1;
        p[0].engine.km_per_gib = 100;
        p[1].engine = p[0].engine;
        engine_prestage_defaults(&params.prestage);
        CHECK(replay_new(&w.ctx, &params, p, 2, on_event, &run, &run.r) == 0);
        strcpy(rep.device_id, "d-1");
        strcpy(rep.user_id, "u-1");
        CHECK(replay_trip(run.r, "u-1", &to_z, T0) == 0);
        for (int hour = 0; hour <= 23; hour++) {
                rep.lon = 0;
                rep.ts_ms = T0 + hour * HOUR_MS;
                rep.received_ms = rep.ts_ms + 1000;
                CHECK(replay_report(run.r, &rep) == 0);
        }
        CHECK(run.n_events == 0);
        rep.lon = 4;
        rep.ts_ms = T0 + 24 * HOUR_MS + 10 * MIN_MS;
        rep.received_ms = rep.ts_ms + 1000;
        CHECK(replay_report(run.r, &rep) == 0);
        CHECK(run.n_events == 1);
        CHECK(run.events[0].kind == REPLAY_QUEUED && run.events[0].policy == 1);
        CHECK(run.events[0].from == X && run.events[0].to == Z);
        CHECK(run.events[0].bytes == (uint64_t)(0.01 * 10 * GIB));
        CHECK(run.reasons[0] == ENGINE_CLOSER);
        run.r = replay_free(run.r);
        geo_index_unref(w.index);
}

TAP_MAIN(TAP_TEST(bad_params_are_refused),
         TAP_TEST(oracle_is_zero_and_home_is_the_distance_from_home),
         TAP_TEST(a_two_hour_dwell_does_not_move_for_a_one_hour_trip),
         TAP_TEST(a_transfer_takes_size_over_bandwidth),
         TAP_TEST(a_superseded_transfer_counts_what_it_sent),
         TAP_TEST(a_transfer_at_almost_no_bandwidth_never_arrives),
         TAP_TEST(transfers_are_counted_by_day_in_any_order),
         TAP_TEST(a_day_s_bytes_are_what_its_transfers_sent),
         TAP_TEST(percentiles_are_the_figures_bins),
         TAP_TEST(each_policy_judges_reports_by_its_own_rules),
         TAP_TEST(pareto_front_keeps_the_undominated),
         TAP_TEST(a_copy_staged_for_an_announced_trip_serves_the_restore_at_the_destination),
         TAP_TEST(a_move_onto_a_complete_warm_copy_pays_for_what_it_lacks_only))
