/* The placement policy, rule by rule, at its edges. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "geo/geo.h"
#include "scheduler/engine.h"
#include "tap.h"

#define MIN_MS (60 * 1000LL)
#define HOUR_MS (60 * MIN_MS)
#define DAY_MS (24 * HOUR_MS)
#define GIB 1073741824ULL
#define T0 1795633200000LL /* 2026-11-25T19:00:00Z */

/* Sites on the equator, where distances are simple to reason about. */
enum { A, B, C, D, N_SITES };

struct world {
        geo_index *index;
        uint64_t replicas[1];
        struct engine_template templates[1];
        struct engine_zone_set zone_sets[2];
        struct engine_context ctx;
        geo_zone *zone;
};

static const char *const east_only[] = { "east" };

/* A at 0°, B at 10°E, C at 10.5°E, D at 30°E; the zone "east" holds C and D. */
static void world_init(struct world *w, enum geo_status b_status, uint64_t b_free) {
        geo_site sites[N_SITES] = {
                { "a", 0, 0, GEO_SITE_ACTIVE, 100 * GIB },
                { "b", 0, 10, b_status, b_free },
                { "c", 0, 10.5, GEO_SITE_ACTIVE, 100 * GIB },
                { "d", 0, 30, GEO_SITE_ACTIVE, 100 * GIB },
        };
        char err[128];

        memset(w, 0, sizeof(*w));
        if (geo_zone_new(&w->zone, "east",
                         "{\"type\": \"Polygon\", \"coordinates\": [[[10.2, -5], [40, -5], [40, 5],"
                         " [10.2, 5], [10.2, -5]]]}",
                         err, sizeof(err)) < 0)
                abort();
        if (geo_index_new(&w->index, sites, N_SITES, &w->zone, 1) < 0)
                abort();
        w->replicas[0] = 1u << A | 1u << C; /* the template is at a and c */
        w->templates[0] = (struct engine_template){ 10 * GIB, w->replicas, 1 };
        w->zone_sets[0] = (struct engine_zone_set){ NULL, 0 };
        w->zone_sets[1] = (struct engine_zone_set){ east_only, 1 };
        w->ctx = (struct engine_context){ w->index, w->templates, 1, w->zone_sets, 2 };
}

static void world_fini(struct world *w) {
        geo_index_unref(w->index);
        geo_zone_unref(w->zone);
}

/* A policy where only the rule under test bites. */
static struct engine_policy lenient(void) {
        struct engine_policy p;
        engine_policy_defaults(&p);
        p.margin_m = 0;
        p.margin_ratio = 0;
        p.dwell_ms = 0;
        p.min_reports = 1;
        p.cooldown_ms = 0;
        p.max_moves_per_day = 1000;
        p.km_per_gib = 0;
        return p;
}

static struct engine_snapshot snapshot_at(uint32_t site) {
        struct engine_snapshot s;
        engine_snapshot_init(&s, site, 0, 1 * GIB, 0);
        return s;
}

static enum engine_reason decide(const struct engine_policy *p, struct world *w,
                                 struct engine_snapshot *s, double lon, int64_t ts,
                                 struct engine_decision *d) {
        struct engine_decision local;
        d = d ? d : &local;
        if (engine_decide(p, &w->ctx, s, 0, lon, ts, d) < 0)
                return ENGINE_REASON_COUNT;
        return d->reason;
}

/* ---- credibility ---- */

TEST(accuracy_at_the_bound_passes_and_beyond_is_dropped) {
        struct engine_policy p = lenient();
        struct engine_device dev = { 0 };
        p.max_accuracy_m = 100;
        CHECK(engine_check_report(&p, &dev, 1, 1, 100.001, T0, T0) == ENGINE_LOW_ACCURACY);
        CHECK(dev.ts_ms == 0);
        CHECK(engine_check_report(&p, &dev, 1, 1, 100, T0, T0) == ENGINE_OK);
        CHECK(dev.ts_ms == T0);
}

TEST(older_and_repeated_reports_are_dropped) {
        struct engine_policy p = lenient();
        struct engine_device dev = { 0 };
        CHECK(engine_check_report(&p, &dev, 1, 1, 5, T0, T0) == ENGINE_OK);
        CHECK(engine_check_report(&p, &dev, 1, 1, 5, T0 - 1, T0) == ENGINE_STALE);
        CHECK(engine_check_report(&p, &dev, 1, 1, 5, T0, T0) == ENGINE_DUPLICATE);
        CHECK(engine_check_report(&p, &dev, 1, 1, 5, T0 + 1, T0) == ENGINE_OK);
}

TEST(a_jump_faster_than_the_speed_bound_is_ignored) {
        struct engine_policy p = lenient();
        struct engine_device dev = { 0 };
        double metres = geo_distance_m(0, 0, 0, 1); /* about 111 km */
        p.max_speed_mps = 300;
        CHECK(engine_check_report(&p, &dev, 0, 0, 5, T0, T0) == ENGINE_OK);
        /* 111 km needs at least 371.07 s at 300 m/s. */
        CHECK(engine_check_report(&p, &dev, 0, 1, 5, T0 + (int64_t)(metres / 300 * 1000) - 1,
                                  T0 + DAY_MS) == ENGINE_IMPLAUSIBLE_SPEED);
        CHECK(dev.ts_ms == T0 && dev.lon == 0);
        CHECK(engine_check_report(&p, &dev, 0, 1, 5, T0 + (int64_t)(metres / 300 * 1000) + 1,
                                  T0 + DAY_MS) == ENGINE_OK);
}

TEST(a_device_clock_ahead_beyond_the_skew_is_ignored) {
        struct engine_policy p = lenient();
        struct engine_device dev = { 0 };
        p.max_future_skew_ms = 1000;
        CHECK(engine_check_report(&p, &dev, 0, 0, 5, T0 + 1001, T0) == ENGINE_FUTURE);
        CHECK(engine_check_report(&p, &dev, 0, 0, 5, T0 + 1000, T0) == ENGINE_OK);
}

/* ---- a better site ---- */

TEST(exactly_at_the_absolute_margin_stays_and_a_millimetre_more_moves) {
        struct world w;
        struct engine_policy p = lenient();
        struct engine_snapshot s = snapshot_at(A);
        double lon = 8; /* nearer b than a */
        double gain = geo_distance_m(0, lon, 0, 0) - geo_distance_m(0, lon, 0, 10);

        world_init(&w, GEO_SITE_ACTIVE, 100 * GIB);
        p.margin_m = gain;
        CHECK(decide(&p, &w, &s, lon, T0, NULL) == ENGINE_WITHIN_MARGIN);
        p.margin_m = gain - 0.001;
        CHECK(decide(&p, &w, &s, lon, T0, NULL) == ENGINE_CLOSER);
        world_fini(&w);
}

TEST(the_relative_margin_holds_back_a_small_share_of_the_way) {
        struct world w;
        struct engine_policy p = lenient();
        struct engine_snapshot s = snapshot_at(A);
        struct engine_decision d;
        double lon = 6;
        double to_a = geo_distance_m(0, lon, 0, 0), to_b = geo_distance_m(0, lon, 0, 10);

        world_init(&w, GEO_SITE_ACTIVE, 100 * GIB);
        p.margin_ratio = 1 - to_b / to_a; /* b is exactly that share nearer */
        CHECK(decide(&p, &w, &s, lon, T0, &d) == ENGINE_WITHIN_MARGIN);
        p.margin_ratio -= 1e-9;
        CHECK(decide(&p, &w, &s, lon, T0, &d) == ENGINE_CLOSER);
        CHECK(d.target == B);
        world_fini(&w);
}

TEST(a_user_already_nearest_stays) {
        struct world w;
        struct engine_policy p = lenient();
        struct engine_snapshot s = snapshot_at(B);
        world_init(&w, GEO_SITE_ACTIVE, 100 * GIB);
        CHECK(decide(&p, &w, &s, 9.9, T0, NULL) == ENGINE_ALREADY_NEAREST);
        world_fini(&w);
}

/* ---- the user stays ---- */

TEST(one_second_short_of_the_dwell_stays_and_at_the_dwell_moves) {
        struct world w;
        struct engine_policy p = lenient();
        struct engine_snapshot s = snapshot_at(A);
        struct engine_decision d;

        world_init(&w, GEO_SITE_ACTIVE, 100 * GIB);
        p.dwell_ms = 30 * MIN_MS;
        p.min_reports = 3;
        CHECK(decide(&p, &w, &s, 10, T0, &d) == ENGINE_DWELL);
        CHECK(d.dwell_reports == 1 && d.dwell_ms == 0);
        CHECK(decide(&p, &w, &s, 10, T0 + 10 * MIN_MS, &d) == ENGINE_DWELL);
        CHECK(decide(&p, &w, &s, 10, T0 + 30 * MIN_MS - 1000, &d) == ENGINE_DWELL);
        CHECK(d.dwell_reports == 3);
        CHECK(decide(&p, &w, &s, 10, T0 + 30 * MIN_MS, &d) == ENGINE_CLOSER);
        world_fini(&w);
}

TEST(too_few_reports_hold_a_move_even_after_the_dwell_time) {
        struct world w;
        struct engine_policy p = lenient();
        struct engine_snapshot s = snapshot_at(A);

        world_init(&w, GEO_SITE_ACTIVE, 100 * GIB);
        p.dwell_ms = 30 * MIN_MS;
        p.min_reports = 3;
        CHECK(decide(&p, &w, &s, 10, T0, NULL) == ENGINE_DWELL);
        CHECK(decide(&p, &w, &s, 10, T0 + 2 * HOUR_MS, NULL) == ENGINE_DWELL);
        CHECK(decide(&p, &w, &s, 10, T0 + 2 * HOUR_MS + 1, NULL) == ENGINE_CLOSER);
        world_fini(&w);
}

TEST(a_train_through_a_city_does_not_move_and_a_flight_that_stays_does) {
        struct world w;
        struct engine_policy p;
        struct engine_snapshot train = snapshot_at(A), flight = snapshot_at(A);
        int moves = 0;

        engine_policy_defaults(&p);
        world_init(&w, GEO_SITE_ACTIVE, 100 * GIB);
        /* The train: 20 minutes near d, a report a minute, then back near a. */
        for (int i = 0; i < 20; i++)
                moves += decide(&p, &w, &train, 30, T0 + i * MIN_MS, NULL) == ENGINE_CLOSER;
        for (int i = 20; i < 200; i++)
                moves += decide(&p, &w, &train, 0.1, T0 + i * MIN_MS, NULL) == ENGINE_CLOSER;
        CHECK(moves == 0);
        /* The flight lands near d and the user stays two days, a report every 10 min. */
        for (int i = 0; i < 2 * 24 * 6; i++)
                moves +=
                        decide(&p, &w, &flight, 30.05, T0 + i * 10 * MIN_MS, NULL) == ENGINE_CLOSER;
        CHECK(moves == 1);
        CHECK(flight.pending == D);
        world_fini(&w);
}

TEST(a_user_oscillating_around_the_midpoint_moves_at_most_once) {
        struct world w;
        struct engine_policy p;
        struct engine_snapshot s = snapshot_at(A);
        int moves = 0;

        engine_policy_defaults(&p);
        world_init(&w, GEO_SITE_ACTIVE, 100 * GIB);
        /* Between a (0°) and b (10°): 4.9° and 5.1°, alternating, a week long. */
        for (int i = 0; i < 7 * 24 * 6; i++) {
                double lon = i % 2 ? 4.9 : 5.1;
                if (decide(&p, &w, &s, lon, T0 + i * 10 * MIN_MS, NULL) == ENGINE_CLOSER) {
                        moves++;
                        s.current = s.pending; /* the transfer completed */
                        s.pending = ENGINE_NO_SITE;
                }
        }
        CHECK(moves <= 1);
        world_fini(&w);
}

/* ---- the snapshot rests ---- */

TEST(a_move_within_the_cooldown_waits) {
        struct world w;
        struct engine_policy p = lenient();
        struct engine_snapshot s = snapshot_at(A);

        world_init(&w, GEO_SITE_ACTIVE, 100 * GIB);
        p.cooldown_ms = 6 * HOUR_MS;
        CHECK(decide(&p, &w, &s, 10, T0, NULL) == ENGINE_CLOSER);
        s.current = B, s.pending = ENGINE_NO_SITE;
        CHECK(decide(&p, &w, &s, 30, T0 + 6 * HOUR_MS - 1, NULL) == ENGINE_COOLDOWN);
        CHECK(decide(&p, &w, &s, 30, T0 + 6 * HOUR_MS, NULL) == ENGINE_CLOSER);
        world_fini(&w);
}

TEST(the_daily_limit_counts_moves_in_a_24_hour_window) {
        struct world w;
        struct engine_policy p = lenient();
        struct engine_snapshot s = snapshot_at(A);
        static const double away[] = { 10, 30 };

        world_init(&w, GEO_SITE_ACTIVE, 100 * GIB);
        p.max_moves_per_day = 2;
        for (int i = 0; i < 2; i++) {
                CHECK(decide(&p, &w, &s, away[i], T0 + i * HOUR_MS, NULL) == ENGINE_CLOSER);
                s.current = s.pending, s.pending = ENGINE_NO_SITE;
        }
        CHECK(decide(&p, &w, &s, 0, T0 + 2 * HOUR_MS, NULL) == ENGINE_DAILY_LIMIT);
        CHECK(decide(&p, &w, &s, 0, T0 + DAY_MS - 1, NULL) == ENGINE_DAILY_LIMIT);
        CHECK(decide(&p, &w, &s, 0, T0 + DAY_MS, NULL) == ENGINE_CLOSER);
        world_fini(&w);
}

/* ---- worth it ---- */

TEST(the_distance_saved_must_pay_for_the_bytes_and_a_missing_template_costs_more) {
        struct world w;
        struct engine_policy p = lenient();
        struct engine_snapshot s = snapshot_at(A);
        struct engine_decision d;
        double gain_km;

        world_init(&w, GEO_SITE_ACTIVE, 100 * GIB);
        /* To b (no template): 1 + 10 GiB. */
        decide(&p, &w, &s, 10, T0, &d);
        CHECK(d.bytes == 11 * GIB && !d.template_present);
        s = snapshot_at(A);
        gain_km = (d.current_m - d.target_m) / 1000;
        p.km_per_gib = gain_km / 11 + 1e-9;
        CHECK(decide(&p, &w, &s, 10, T0, &d) == ENGINE_NOT_WORTH_IT);
        p.km_per_gib = gain_km / 11;
        CHECK(decide(&p, &w, &s, 10, T0, &d) == ENGINE_CLOSER);
        /* To c (template present): the snapshot alone. */
        s = snapshot_at(A);
        decide(&p, &w, &s, 10.5, T0, &d);
        CHECK(d.target == C && d.bytes == 1 * GIB && d.template_present);
        world_fini(&w);
}

TEST(a_move_refused_for_the_whole_snapshot_is_made_when_a_copy_at_the_target_holds_most_of_it) {
        struct world w;
        struct engine_policy p = lenient();
        struct engine_snapshot s = snapshot_at(A);
        struct engine_decision d;
        double gain_km;

        world_init(&w, GEO_SITE_ACTIVE, 100 * GIB);
        /* To c (template present), the whole 1 GiB: refused for a hair. */
        decide(&p, &w, &s, 10.5, T0, &d);
        gain_km = (d.current_m - d.target_m) / 1000;
        p.km_per_gib = gain_km / 1 + 1e-9;
        s = snapshot_at(A);
        CHECK(decide(&p, &w, &s, 10.5, T0, &d) == ENGINE_NOT_WORTH_IT);
        CHECK(d.send_bytes == 1 * GIB && !d.copy_present);
        /* A copy at c that lacks a quarter of the snapshot: a quarter is sent,
         * the whole snapshot still lands there (what the target reserves). */
        s = snapshot_at(A);
        s.copy_site = C;
        s.copy_lacks_bytes = GIB / 4;
        CHECK(decide(&p, &w, &s, 10.5, T0, &d) == ENGINE_CLOSER);
        CHECK(d.target == C && d.copy_present && d.send_bytes == GIB / 4 && d.bytes == 1 * GIB);
        /* ...and it pays exactly at the quarter's price, not a hair above it. */
        s = snapshot_at(A);
        s.copy_site = C;
        s.copy_lacks_bytes = GIB / 4;
        p.km_per_gib = gain_km * 4 + 1e-9;
        CHECK(decide(&p, &w, &s, 10.5, T0, &d) == ENGINE_NOT_WORTH_IT);
        p.km_per_gib = gain_km * 4;
        CHECK(decide(&p, &w, &s, 10.5, T0, &d) == ENGINE_CLOSER);
        world_fini(&w);
}

TEST(a_copy_at_another_site_saves_nothing_and_a_template_missing_at_the_copy_still_counts) {
        struct world w;
        struct engine_policy p = lenient();
        struct engine_snapshot s = snapshot_at(A);
        struct engine_decision d;

        world_init(&w, GEO_SITE_ACTIVE, 100 * GIB);
        /* The copy is at d; the user goes near c: the whole snapshot. */
        s.copy_site = D;
        s.copy_lacks_bytes = 0;
        CHECK(decide(&p, &w, &s, 10.5, T0, &d) == ENGINE_CLOSER);
        CHECK(d.target == C && !d.copy_present && d.send_bytes == 1 * GIB);
        /* A current copy at b, which lacks the template (10 GiB): the template alone. */
        s = snapshot_at(A);
        s.copy_site = B;
        s.copy_lacks_bytes = 0;
        decide(&p, &w, &s, 10, T0, &d);
        CHECK(d.target == B && d.copy_present && d.send_bytes == 10 * GIB && d.bytes == 11 * GIB);
        /* A copy said to lack more than the snapshot's size sends the snapshot, no more. */
        s = snapshot_at(A);
        s.copy_site = C;
        s.copy_lacks_bytes = 5 * GIB;
        decide(&p, &w, &s, 10.5, T0, &d);
        CHECK(d.copy_present && d.send_bytes == 1 * GIB);
        /* A fresh snapshot knows no copy. */
        engine_snapshot_init(&s, A, 0, 1 * GIB, 0);
        CHECK(s.copy_site == ENGINE_NO_SITE);
        world_fini(&w);
}

/* ---- eligibility ---- */

TEST(a_draining_nearest_site_is_skipped_for_the_next_eligible_one) {
        struct world w;
        struct engine_policy p = lenient();
        struct engine_snapshot s = snapshot_at(A);
        struct engine_decision d;

        world_init(&w, GEO_SITE_DRAINING, 100 * GIB);
        CHECK(decide(&p, &w, &s, 10, T0, &d) == ENGINE_CLOSER);
        CHECK(d.nearest == B && d.target == C);
        world_fini(&w);
}

TEST(a_stay_names_what_held_back_the_nearest_site) {
        struct world w;
        struct engine_policy p = lenient();
        struct engine_snapshot s = snapshot_at(C);
        struct engine_decision d;

        /* The user is at b; c (current) is 55 km away; b is down, full or outside the zone. */
        p.margin_m = 10000;
        world_init(&w, GEO_SITE_DOWN, 100 * GIB);
        CHECK(decide(&p, &w, &s, 10, T0, &d) == ENGINE_DOWN);
        world_fini(&w);
        world_init(&w, GEO_SITE_DRAINING, 100 * GIB);
        CHECK(decide(&p, &w, &s, 10, T0, &d) == ENGINE_DRAINING);
        world_fini(&w);
        world_init(&w, GEO_SITE_ACTIVE, 5 * GIB); /* needs 11 GiB: snapshot and template */
        CHECK(decide(&p, &w, &s, 10, T0, &d) == ENGINE_CAPACITY);
        world_fini(&w);
        world_init(&w, GEO_SITE_ACTIVE, 100 * GIB);
        s.zone_set = 1; /* "east": c and d only */
        CHECK(decide(&p, &w, &s, 10, T0, &d) == ENGINE_ZONE);
        world_fini(&w);
}

TEST(a_snapshot_restricted_to_a_zone_moves_only_inside_it) {
        struct world w;
        struct engine_policy p = lenient();
        struct engine_snapshot s = snapshot_at(D);
        struct engine_decision d;

        world_init(&w, GEO_SITE_ACTIVE, 100 * GIB);
        s.zone_set = 1;
        CHECK(decide(&p, &w, &s, 1, T0, &d) == ENGINE_CLOSER);
        CHECK(d.nearest == A && d.target == C);
        world_fini(&w);
}

TEST(an_unknown_zone_means_nowhere_qualifies) {
        struct world w;
        struct engine_policy p = lenient();
        struct engine_snapshot s = snapshot_at(A);
        static const char *const nowhere[] = { "atlantis" };

        world_init(&w, GEO_SITE_ACTIVE, 100 * GIB);
        w.zone_sets[1] = (struct engine_zone_set){ nowhere, 1 };
        s.zone_set = 1;
        CHECK(decide(&p, &w, &s, 10, T0, NULL) == ENGINE_ZONE);
        world_fini(&w);
}

TEST(a_site_is_allowed_anywhere_inside_one_of_the_zones_and_nowhere_for_an_unknown_set) {
        struct world w;

        world_init(&w, GEO_SITE_ACTIVE, 100 * GIB);
        CHECK(engine_site_allowed(&w.ctx, 0, A) && engine_site_allowed(&w.ctx, 0, D));
        CHECK(!engine_site_allowed(&w.ctx, 1, A) && !engine_site_allowed(&w.ctx, 1, B));
        CHECK(engine_site_allowed(&w.ctx, 1, C) && engine_site_allowed(&w.ctx, 1, D));
        CHECK(!engine_site_allowed(&w.ctx, 2, C)); /* no such set */
        world_fini(&w);
}

/* ---- transfers in flight ---- */

TEST(a_transfer_to_the_same_target_is_left_alone_and_a_new_target_supersedes_it) {
        struct world w;
        struct engine_policy p = lenient();
        struct engine_snapshot s = snapshot_at(A);
        struct engine_decision d;

        world_init(&w, GEO_SITE_ACTIVE, 100 * GIB);
        CHECK(decide(&p, &w, &s, 10, T0, &d) == ENGINE_CLOSER);
        CHECK(d.superseded == ENGINE_NO_SITE && s.pending == B);
        CHECK(decide(&p, &w, &s, 10, T0 + MIN_MS, &d) == ENGINE_TRANSFER_PENDING);
        CHECK(decide(&p, &w, &s, 30, T0 + 2 * MIN_MS, &d) == ENGINE_CLOSER);
        CHECK(d.superseded == B && s.pending == D);
        world_fini(&w);
}

TEST(a_user_who_comes_back_before_the_move_ends_withdraws_it_after_the_dwell) {
        struct world w;
        struct engine_policy p = lenient();
        struct engine_snapshot s = snapshot_at(A);
        struct engine_decision d;

        p.dwell_ms = 30 * MIN_MS;
        p.min_reports = 2;
        world_init(&w, GEO_SITE_ACTIVE, 100 * GIB);
        CHECK(decide(&p, &w, &s, 10, T0, &d) == ENGINE_DWELL);
        CHECK(decide(&p, &w, &s, 10, T0 + 30 * MIN_MS, &d) == ENGINE_CLOSER && s.pending == B);
        /* Back at a: a passing report withdraws nothing, a stay does. */
        CHECK(decide(&p, &w, &s, 0, T0 + 40 * MIN_MS, &d) == ENGINE_DWELL);
        CHECK(d.superseded == ENGINE_NO_SITE && s.pending == B);
        CHECK(decide(&p, &w, &s, 0, T0 + 70 * MIN_MS - 1, &d) == ENGINE_DWELL);
        CHECK(decide(&p, &w, &s, 0, T0 + 70 * MIN_MS, &d) == ENGINE_RETURNED);
        CHECK(d.outcome == ENGINE_STAY && d.superseded == B && d.target == A);
        CHECK(s.pending == ENGINE_NO_SITE && s.current == A);
        /* Nothing is in flight any more: a is simply the nearest. */
        CHECK(decide(&p, &w, &s, 0, T0 + 80 * MIN_MS, &d) == ENGINE_ALREADY_NEAREST);
        CHECK(d.superseded == ENGINE_NO_SITE);
        world_fini(&w);
}

TEST(a_user_between_sites_leaves_the_move_in_flight) {
        struct world w;
        struct engine_policy p = lenient();
        struct engine_snapshot s = snapshot_at(A);
        struct engine_decision d;

        p.margin_m = 300000;
        world_init(&w, GEO_SITE_ACTIVE, 100 * GIB);
        CHECK(decide(&p, &w, &s, 30, T0, &d) == ENGINE_CLOSER && s.pending == D);
        /* 6°E: b is the nearest, but not by the margin; a is not the nearest. */
        CHECK(decide(&p, &w, &s, 6, T0 + MIN_MS, &d) == ENGINE_WITHIN_MARGIN);
        CHECK(d.superseded == ENGINE_NO_SITE && s.pending == D);
        world_fini(&w);
}

TEST(the_defaults_are_the_configured_defaults) {
        struct engine_policy p;
        struct config c;
        char *argv[] = { "schedule", NULL };
        const char *vars[] = { "HOMING_MOVE_MARGIN_M",  "HOMING_MOVE_MARGIN_RATIO",
                               "HOMING_MAX_ACCURACY_M", "HOMING_MAX_SPEED_MPS",
                               "HOMING_DWELL_S",        "HOMING_DWELL_REPORTS",
                               "HOMING_COOLDOWN_S",     "HOMING_MAX_MOVES_PER_DAY",
                               "HOMING_KM_PER_GIB",     "HOMING_MAX_FUTURE_SKEW_S" };
        for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
                unsetenv(vars[i]);
        engine_policy_defaults(&p);
        CHECK(config_load(&c, 1, argv, "t") == 0);
        CHECK(p.margin_m == c.move_margin_m);
        CHECK(p.margin_ratio == c.move_margin_ratio);
        CHECK(p.max_accuracy_m == c.max_accuracy_m);
        CHECK(p.max_speed_mps == c.max_speed_mps);
        CHECK(p.max_future_skew_ms == c.max_future_skew_s * 1000);
        CHECK(p.dwell_ms == c.dwell_s * 1000);
        CHECK(p.min_reports == c.dwell_reports);
        CHECK(p.cooldown_ms == c.cooldown_s * 1000);
        CHECK(p.max_moves_per_day == c.max_moves_per_day);
        CHECK(p.km_per_gib == c.km_per_gib);
        config_fini(&c);
}

/* ---- pre-staging ---- */

/* A snapshot of 1 GiB at a, its template (10 GiB) at a and c; a trip to d. */
TEST(an_announced_trip_is_staged_one_transfer_and_the_lead_before_arrival_and_released_after) {
        struct world w;
        struct engine_prestage_policy pp;
        struct engine_snapshot s = snapshot_at(A);
        struct engine_trip trip = { 0, 30, T0 + DAY_MS, T0 + 3 * DAY_MS };
        struct engine_prestage d;
        int64_t takes;

        world_init(&w, GEO_SITE_ACTIVE, 100 * GIB);
        engine_prestage_defaults(&pp);
        pp.bandwidth_bps = GIB / 100.0; /* 11 GiB (the template is not at d) take 1,100 s */
        takes = 1100 * 1000LL;
        CHECK(engine_prestage_decide(&pp, &w.ctx, &s, &trip, 0, T0, &d) == 0);
        CHECK(d.action == ENGINE_PRESTAGE_WAIT && d.site == D);
        CHECK(d.bytes == 11 * GIB);
        CHECK(d.stage_at_ms == trip.arrive_ms - takes - pp.lead_ms);
        CHECK(d.end_ms == trip.return_ms);
        CHECK(engine_prestage_decide(&pp, &w.ctx, &s, &trip, 0, d.stage_at_ms - 1, &d) == 0);
        CHECK(d.action == ENGINE_PRESTAGE_WAIT);
        CHECK(engine_prestage_decide(&pp, &w.ctx, &s, &trip, 0, d.stage_at_ms, &d) == 0);
        CHECK(d.action == ENGINE_PRESTAGE_STAGE && d.site == D);
        CHECK(engine_prestage_decide(&pp, &w.ctx, &s, &trip, 0, trip.return_ms - 1, &d) == 0);
        CHECK(d.action == ENGINE_PRESTAGE_STAGE);
        CHECK(engine_prestage_decide(&pp, &w.ctx, &s, &trip, 0, trip.return_ms, &d) == 0);
        CHECK(d.action == ENGINE_PRESTAGE_RELEASE);
        /* already at the destination's site: nothing to stage */
        s = snapshot_at(D);
        CHECK(engine_prestage_decide(&pp, &w.ctx, &s, &trip, 0, trip.arrive_ms, &d) == 0);
        CHECK(d.action == ENGINE_PRESTAGE_WAIT && d.site == ENGINE_NO_SITE);
        world_fini(&w);
}

TEST(a_trip_without_a_return_lasts_until_the_linger_after_the_last_report_near_it) {
        struct world w;
        struct engine_prestage_policy pp;
        struct engine_snapshot s = snapshot_at(A);
        struct engine_trip trip = { 0, 30, T0, 0 };
        struct engine_prestage d;

        world_init(&w, GEO_SITE_ACTIVE, 100 * GIB);
        engine_prestage_defaults(&pp);
        CHECK(engine_prestage_decide(&pp, &w.ctx, &s, &trip, 0, T0, &d) == 0);
        CHECK(d.end_ms == T0 + pp.linger_ms && d.action == ENGINE_PRESTAGE_STAGE);
        CHECK(engine_prestage_decide(&pp, &w.ctx, &s, &trip, T0 + 5 * HOUR_MS, T0 + pp.linger_ms,
                                     &d) == 0);
        CHECK(d.action == ENGINE_PRESTAGE_STAGE && d.end_ms == T0 + 5 * HOUR_MS + pp.linger_ms);
        CHECK(engine_prestage_decide(&pp, &w.ctx, &s, &trip, T0 + 5 * HOUR_MS,
                                     T0 + 5 * HOUR_MS + pp.linger_ms, &d) == 0);
        CHECK(d.action == ENGINE_PRESTAGE_RELEASE);
        world_fini(&w);
}

TEST(a_staged_copy_goes_to_the_nearest_eligible_site_inside_the_zones_with_room) {
        struct world w;
        struct engine_prestage_policy pp;
        struct engine_snapshot s = snapshot_at(A);
        struct engine_trip near_b = { 0, 10.1, T0, T0 + DAY_MS };
        struct engine_prestage d;

        engine_prestage_defaults(&pp);
        /* b is nearest; drained, c takes it */
        world_init(&w, GEO_SITE_DRAINING, 100 * GIB);
        CHECK(engine_prestage_decide(&pp, &w.ctx, &s, &near_b, 0, T0, &d) == 0);
        CHECK(d.action == ENGINE_PRESTAGE_STAGE && d.site == C && d.bytes == 1 * GIB);
        world_fini(&w);
        /* b without room for the snapshot and its template: c */
        world_init(&w, GEO_SITE_ACTIVE, 5 * GIB);
        CHECK(engine_prestage_decide(&pp, &w.ctx, &s, &near_b, 0, T0, &d) == 0);
        CHECK(d.site == C);
        world_fini(&w);
        /* confined to "east" (c, d) */
        world_init(&w, GEO_SITE_ACTIVE, 100 * GIB);
        engine_snapshot_init(&s, A, 0, 1 * GIB, 1);
        near_b.lon = 9;
        CHECK(engine_prestage_decide(&pp, &w.ctx, &s, &near_b, 0, T0, &d) == 0);
        CHECK(d.site == C);
        world_fini(&w);
}

TEST(a_staged_copy_serves_a_trip_only_when_the_move_on_arrival_would_go_there) {
        struct world w;
        struct engine_policy p;
        struct engine_snapshot s = snapshot_at(A);
        struct engine_trip to_d = { 0, 30, T0, T0 + DAY_MS }, to_b = { 0, 10, T0, T0 + DAY_MS };

        world_init(&w, GEO_SITE_ACTIVE, 100 * GIB);
        engine_policy_defaults(&p); /* 50 km and a fifth of the way */
        CHECK(engine_prestage_serves(&p, &w.ctx, &s, &to_d, D));
        /* to b (1,113 km from a): b, and c 56 km off it */
        CHECK(engine_prestage_serves(&p, &w.ctx, &s, &to_b, B));
        CHECK(engine_prestage_serves(&p, &w.ctx, &s, &to_b, C));
        /* to a itself: nothing beats a */
        to_b.lon = 0;
        CHECK(!engine_prestage_serves(&p, &w.ctx, &s, &to_b, B));
        CHECK(!engine_prestage_serves(&p, &w.ctx, &s, &to_b, A));
        /* to 5°E: c (612 km) is further than a (557 km) */
        to_b.lon = 5;
        CHECK(!engine_prestage_serves(&p, &w.ctx, &s, &to_b, C));
        /* to 6°E: b 445 km, a 668 km, by both margins */
        to_b.lon = 6;
        CHECK(engine_prestage_serves(&p, &w.ctx, &s, &to_b, B));
        /* to 5.5°E: b 501 km, a 612 km: by 111 km, not by a fifth (490 km) */
        to_b.lon = 5.5;
        CHECK(!engine_prestage_serves(&p, &w.ctx, &s, &to_b, B));
        /* nowhere yet: any site serves; an unknown site none */
        s = snapshot_at(ENGINE_NO_SITE);
        CHECK(engine_prestage_serves(&p, &w.ctx, &s, &to_b, A));
        CHECK(!engine_prestage_serves(&p, &w.ctx, &s, &to_b, ENGINE_NO_SITE));
        world_fini(&w);
}

/* A weekly commuter: at d on Mondays at 08:00 for three weeks, home (a) on
 * Fridays. The next Monday's arrival is predicted; a site seen on a Monday
 * only once is not. */
TEST(arrivals_on_one_weekday_in_two_weeks_of_four_predict_the_next) {
        struct engine_prestage_policy pp;
        const int64_t monday = 1794787200000LL; /* 2026-11-16T00:00:00Z, a Monday */
        struct engine_visit v[8];
        struct engine_trip t;
        size_t n = 0;

        engine_prestage_defaults(&pp);
        for (int week = 0; week < 3; week++) {
                v[n++] = (struct engine_visit){
                        monday + week * 7 * DAY_MS + 8 * HOUR_MS + week * 10 * MIN_MS, D, 0, 30
                };
                v[n++] = (struct engine_visit){ monday + (week * 7 + 4) * DAY_MS + 19 * HOUR_MS, A,
                                                0, 0 };
        }
        v[n++] = (struct engine_visit){ monday + 2 * DAY_MS, B, 0, 10 }; /* once, a Wednesday */
        /* Sunday of week 3: next is Monday 08:00 at d (the earliest time seen) */
        CHECK(engine_recurring_trip(&pp, v, n, monday + 20 * DAY_MS, &t) == 1);
        CHECK(t.arrive_ms == monday + 21 * DAY_MS + 8 * HOUR_MS && t.lon == 30 && t.return_ms == 0);
        /* Tuesday of week 3: the Friday return home comes first */
        CHECK(engine_recurring_trip(&pp, v, n, monday + 15 * DAY_MS, &t) == 1);
        CHECK(t.arrive_ms == monday + 18 * DAY_MS + 19 * HOUR_MS && t.lon == 0);
        /* one week seen is not a pattern: after week 0 only */
        CHECK(engine_recurring_trip(&pp, v, n, monday + 6 * DAY_MS, &t) == 0);
        /* three of them needed: not yet at week 1's end */
        pp.min_weeks = 3;
        CHECK(engine_recurring_trip(&pp, v, n, monday + 13 * DAY_MS, &t) == 0);
        CHECK(engine_recurring_trip(&pp, v, n, monday + 20 * DAY_MS, &t) == 1);
        /* arrivals older than the window are forgotten */
        pp.min_weeks = 2;
        pp.weeks = 1;
        CHECK(engine_recurring_trip(&pp, v, n, monday + 20 * DAY_MS, &t) == 0);
}

TAP_MAIN(
        TAP_TEST(accuracy_at_the_bound_passes_and_beyond_is_dropped),
        TAP_TEST(older_and_repeated_reports_are_dropped),
        TAP_TEST(a_jump_faster_than_the_speed_bound_is_ignored),
        TAP_TEST(a_device_clock_ahead_beyond_the_skew_is_ignored),
        TAP_TEST(exactly_at_the_absolute_margin_stays_and_a_millimetre_more_moves),
        TAP_TEST(the_relative_margin_holds_back_a_small_share_of_the_way),
        TAP_TEST(a_user_already_nearest_stays),
        TAP_TEST(one_second_short_of_the_dwell_stays_and_at_the_dwell_moves),
        TAP_TEST(too_few_reports_hold_a_move_even_after_the_dwell_time),
        TAP_TEST(a_train_through_a_city_does_not_move_and_a_flight_that_stays_does),
        TAP_TEST(a_user_oscillating_around_the_midpoint_moves_at_most_once),
        TAP_TEST(a_move_within_the_cooldown_waits),
        TAP_TEST(the_daily_limit_counts_moves_in_a_24_hour_window),
        TAP_TEST(the_distance_saved_must_pay_for_the_bytes_and_a_missing_template_costs_more),
        TAP_TEST(
                a_move_refused_for_the_whole_snapshot_is_made_when_a_copy_at_the_target_holds_most_of_it),
        TAP_TEST(
                a_copy_at_another_site_saves_nothing_and_a_template_missing_at_the_copy_still_counts),
        TAP_TEST(a_draining_nearest_site_is_skipped_for_the_next_eligible_one),
        TAP_TEST(a_stay_names_what_held_back_the_nearest_site),
        TAP_TEST(a_snapshot_restricted_to_a_zone_moves_only_inside_it),
        TAP_TEST(an_unknown_zone_means_nowhere_qualifies),
        TAP_TEST(a_site_is_allowed_anywhere_inside_one_of_the_zones_and_nowhere_for_an_unknown_set),
        TAP_TEST(a_transfer_to_the_same_target_is_left_alone_and_a_new_target_supersedes_it),
        TAP_TEST(a_user_who_comes_back_before_the_move_ends_withdraws_it_after_the_dwell),
        TAP_TEST(a_user_between_sites_leaves_the_move_in_flight),
        TAP_TEST(the_defaults_are_the_configured_defaults),
        TAP_TEST(
                an_announced_trip_is_staged_one_transfer_and_the_lead_before_arrival_and_released_after),
        TAP_TEST(a_trip_without_a_return_lasts_until_the_linger_after_the_last_report_near_it),
        TAP_TEST(a_staged_copy_goes_to_the_nearest_eligible_site_inside_the_zones_with_room),
        TAP_TEST(a_staged_copy_serves_a_trip_only_when_the_move_on_arrival_would_go_there),
        TAP_TEST(arrivals_on_one_weekday_in_two_weeks_of_four_predict_the_next))
