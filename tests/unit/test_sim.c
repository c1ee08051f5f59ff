/* The fleet simulator on small worlds whose answers are known: the same
 * seed is the same fleet, events come in delivery order and are valid
 * reports, the settings' shares come out as asked, trips follow the gravity
 * model, and restores happen when people start work. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "geo/geo.h"
#include "report/report.h"
#include "sim/sim.h"
#include "tap.h"

#define HOUR_MS (3600 * 1000LL)
#define DAY_MS (24 * HOUR_MS)

/* H on the equator at 0°, B 10° east with a tenth of its people, S 10°
 * west with a hundredth: from H, B and S are equally far. */
static const struct sim_city world[] = {
        { "h", 0, 0, 10000000 },
        { "b", 0, 10, 1000000 },
        { "s", 0, -10, 100000 },
};

struct collected {
        struct sim_event *v;
        size_t n, cap;
        unsigned long long hash; /* of every event's JSON line, in order */
};

static int collect(void *ctx, const struct sim_event *ev) {
        struct collected *c = ctx;
        char *line = sim_event_json(ev);
        if (!line)
                return -1;
        for (const char *p = line; *p; p++)
                c->hash = (c->hash ^ (unsigned char)*p) * 1099511628211ULL;
        free(line);
        if (c->n == c->cap) {
                c->cap = c->cap ? c->cap * 2 : 4096;
                c->v = realloc(c->v, c->cap * sizeof(*c->v));
                if (!c->v)
                        abort();
        }
        c->v[c->n++] = *ev;
        return 0;
}

static struct sim_params small(size_t users, int days) {
        struct sim_params p;
        sim_params_defaults(&p);
        p.users = users;
        p.days = days;
        return p;
}

TEST(the_same_seed_is_the_same_fleet_and_another_seed_another) {
        struct sim_params p = small(200, 7);
        struct collected a = { .hash = 14695981039346656037ULL }, b = a, c = a;

        CHECK(sim_run(&p, world, 3, collect, &a, NULL) == 0);
        CHECK(sim_run(&p, world, 3, collect, &b, NULL) == 0);
        p.seed = 2;
        CHECK(sim_run(&p, world, 3, collect, &c, NULL) == 0);
        CHECK(a.n > 1000 && a.n == b.n && a.hash == b.hash);
        CHECK(a.hash != c.hash);
        free(a.v);
        free(b.v);
        free(c.v);
}

TEST(events_come_in_delivery_order_as_valid_reports) {
        struct sim_params p = small(300, 10);
        struct collected c = { 0 };
        struct sim_stats st;
        size_t reports = 0, restores = 0, late = 0;

        CHECK(sim_run(&p, world, 3, collect, &c, &st) == 0);
        for (size_t i = 0; i < c.n; i++) {
                const struct report *r = &c.v[i].report;
                if (i > 0)
                        CHECK(r->received_ms >= c.v[i - 1].report.received_ms);
                CHECK(geo_point_valid(r->lat, r->lon));
                CHECK(r->ts_ms >= p.start_ms && r->ts_ms < p.start_ms + p.days * DAY_MS);
                if (c.v[i].kind == SIM_TRIP)
                        continue; /* the trips' own test */
                if (c.v[i].kind == SIM_RESTORE) {
                        restores++;
                        continue;
                }
                reports++;
                CHECK(r->received_ms > r->ts_ms);
                late += r->received_ms - r->ts_ms > 60 * 1000;
                CHECK(r->accuracy_m >= 5 && r->accuracy_m <= 2000);
                /* what homing's API would put on Kafka and its scheduler read */
                char *text = report_encode(r);
                struct report back;
                CHECK(text && report_decode(text, strlen(text), &back) == 0);
                CHECK(text && !strcmp(back.user_id, r->user_id) && back.ts_ms == r->ts_ms);
                free(text);
        }
        CHECK(reports == st.reports + st.duplicates && restores == st.restores);
        /* 2 % delivered late, give or take four standard deviations */
        CHECK(fabs((double)late - 0.02 * (double)st.reports) < 4 * sqrt(0.02 * (double)st.reports));
        free(c.v);
}

TEST(the_share_of_users_who_never_leave_home_is_as_asked) {
        struct sim_params p = small(4000, 1);
        struct sim_stats st;

        p.report_interval_s = 86400;
        struct collected c = { 0 };
        double sd = sqrt(4000 * 0.15 * 0.85);

        CHECK(sim_run(&p, world, 3, collect, &c, &st) == 0);
        CHECK(fabs((double)st.stayers - 600) < 4 * sd);
        free(c.v);
}

/* Everyone stays home: every report of a user is within a few kilometres of
 * the others (the cell's noise), the whole month. */
TEST(a_user_who_never_leaves_home_reports_from_home) {
        struct sim_params p = small(50, 30);
        struct collected c = { 0 };
        double first[50][2];
        bool seen[50] = { false };

        p.stayer_share = 1;
        CHECK(sim_run(&p, world, 3, collect, &c, NULL) == 0);
        for (size_t i = 0; i < c.n; i++) {
                const struct report *r = &c.v[i].report;
                int u = atoi(r->user_id + 2);
                if (!seen[u]) {
                        seen[u] = true;
                        first[u][0] = r->lat;
                        first[u][1] = r->lon;
                }
                CHECK(geo_distance_m(first[u][0], first[u][1], r->lat, r->lon) < 10000);
        }
        free(c.v);
}

/* The reports, from within 100 km of (0, a_lon) and of (0, b_lon), of the
 * users whose month starts in the first city of `cities`, at (0, 0): where
 * its people go on their many business trips. Returns sim_run's result. */
static int trips_from_the_first_city(const struct sim_city *cities, double a_lon, double b_lon,
                                     double *near_a, double *near_b) {
        struct sim_params p = small(1000, 30);
        struct collected c = { 0 };
        bool *from_first = calloc(p.users, 1), *known = calloc(p.users, 1);

        p.stayer_share = 0;
        p.night_off_share = 0;
        p.business_trips_per_day = 1.0 / 5;
        p.report_interval_s = 4 * 3600;
        int ran;

        *near_a = *near_b = 0;
        ran = sim_run(&p, cities, 3, collect, &c, NULL);
        for (size_t i = 0; i < c.n; i++) {
                const struct report *r = &c.v[i].report;
                int u = atoi(r->user_id + 2);
                if (!known[u]) { /* a month starts at home */
                        known[u] = true;
                        from_first[u] = geo_distance_m(0, 0, r->lat, r->lon) < 100000;
                }
                if (!from_first[u] || c.v[i].kind != SIM_REPORT)
                        continue;
                *near_a += geo_distance_m(0, a_lon, r->lat, r->lon) < 100000;
                *near_b += geo_distance_m(0, b_lon, r->lat, r->lon) < 100000;
        }
        free(from_first);
        free(known);
        free(c.v);
        return ran;
}

/* Gravity, population: from h, b draws ten times the trips s does (equally
 * far, ten times the people). */
TEST(trips_go_to_bigger_cities_in_proportion_to_their_population) {
        double near_b, near_s;
        CHECK(trips_from_the_first_city(world, 10, -10, &near_b, &near_s) == 0);
        CHECK(near_s > 100);
        CHECK(near_b / near_s > 6 && near_b / near_s < 16);
}

/* Gravity, distance: from h, n (5° east) draws four times the trips f
 * (10° west) does: as many people, half as far, and the pull falls with
 * the square of the distance. */
TEST(trips_go_to_nearer_cities_by_the_square_of_their_distance) {
        static const struct sim_city two_alike[] = {
                { "h", 0, 0, 10000000 },
                { "n", 0, 5, 1000000 },
                { "f", 0, -10, 1000000 },
        };
        double near_n, near_f;
        CHECK(trips_from_the_first_city(two_alike, 5, -10, &near_n, &near_f) == 0);
        CHECK(near_f > 100);
        CHECK(near_n / near_f > 2.5 && near_n / near_f < 6.5);
}

TEST(restores_on_working_days_come_in_the_local_morning) {
        struct sim_params p = small(500, 14);
        struct collected c = { 0 };
        bool *at_h = calloc(p.users, 1);
        size_t morning = 0, weekday_restores = 0, users_at_h = 0;

        p.stayer_share = 1;
        p.report_interval_s = 7 * 86400; /* restores only, nearly */
        CHECK(sim_run(&p, world, 3, collect, &c, NULL) == 0);
        for (size_t i = 0; i < c.n; i++) {
                int64_t t = c.v[i].report.ts_ms;
                int day = (int)((t - p.start_ms) / DAY_MS); /* the start is a Monday */
                int u = atoi(c.v[i].report.user_id + 2);
                /* homes in h keep UTC; b's are an hour ahead */
                if (c.v[i].kind != SIM_RESTORE || fabs(c.v[i].report.lon) > 1 || day % 7 >= 5)
                        continue;
                users_at_h += !at_h[u];
                at_h[u] = true;
                weekday_restores++;
                morning += t % DAY_MS >= 8 * HOUR_MS && t % DAY_MS < 10 * HOUR_MS;
        }
        /* 10 working days, 80 % of them, give or take four standard deviations */
        double expected = 0.8 * 10 * (double)users_at_h;
        CHECK(users_at_h > 400);
        CHECK(fabs((double)weekday_restores - expected) < 4 * sqrt(expected * 0.2));
        CHECK(morning == weekday_restores);
        free(at_h);
        free(c.v);
}

/* Weekly commuters: the share asked of the users who travel, each flying out
 * on every Monday of the run (two in 14 days from a Monday) and reporting
 * from one far city on the days between. */
TEST(the_share_of_weekly_commuters_is_as_asked_and_they_fly_every_monday) {
        struct sim_params p = small(2000, 14);
        struct collected c = { 0 };
        struct sim_stats st;
        double movers, sd;

        p.commuter_share = 0.1;
        p.report_interval_s = 86400;
        CHECK(sim_run(&p, world, 3, collect, &c, &st) == 0);
        movers = (double)(st.users - st.stayers);
        sd = sqrt(movers * 0.1 * 0.9);
        CHECK(fabs((double)st.commuters - 0.1 * movers) < 4 * sd);
        CHECK(st.commutes == 2 * st.commuters);
        free(c.v);
        /* none asked, none made, and no trip announced without the share */
        c = (struct collected){ 0 };
        p.commuter_share = 0;
        p.announced_share = 0;
        CHECK(sim_run(&p, world, 3, collect, &c, &st) == 0);
        CHECK(st.commuters == 0 && st.commutes == 0 && st.announced == 0);
        for (size_t i = 0; i < c.n; i++)
                CHECK(c.v[i].kind != SIM_TRIP);
        free(c.v);
}

/* Which of the world's cities a longitude is nearest: 0, 1 (b) or -1 (s). */
static int city_of(double lon) {
        return lon > 5 ? 1 : lon < -5 ? -1 : 0;
}

/* Announced trips: the share asked of business trips, each told before it
 * lands, with a return after the arrival, to a city far from home, and
 * written as a {"trip": ...} line. */
TEST(the_share_of_business_trips_announced_is_as_asked_and_each_comes_ahead) {
        struct sim_params p = small(1000, 20);
        struct collected c = { 0 };
        struct sim_stats st;
        size_t trips = 0;
        double sd;

        p.stayer_share = 0;
        p.commuter_share = 0;
        p.announced_share = 0.3;
        p.business_trips_per_day = 1.0 / 5;
        p.report_interval_s = 86400;
        CHECK(sim_run(&p, world, 3, collect, &c, &st) == 0);
        sd = sqrt((double)st.business_trips * 0.3 * 0.7);
        CHECK(st.business_trips > 1000);
        CHECK(fabs((double)st.announced - 0.3 * (double)st.business_trips) < 4 * sd);
        for (size_t i = 0; i < c.n; i++) {
                const struct sim_event *e = &c.v[i];
                char *line;
                if (e->kind != SIM_TRIP)
                        continue;
                trips++;
                CHECK(e->report.ts_ms >= p.start_ms && e->report.ts_ms < e->arrive_ms);
                CHECK(e->report.received_ms == e->report.ts_ms);
                CHECK(e->return_ms > e->arrive_ms);
                /* to one of the world's cities, a few km from its centre */
                CHECK(geo_distance_m(0, 10 * city_of(e->report.lon), e->report.lat, e->report.lon) <
                      50000);
                line = sim_event_json(e);
                CHECK(line && !strncmp(line, "{\"trip\":{", 9) && strstr(line, "\"arrive_at\"") &&
                      strstr(line, "\"return_at\""));
                free(line);
        }
        CHECK(trips == st.announced);
        free(c.v);
}

TEST(bad_settings_and_worlds_are_refused) {
        struct sim_params p = small(10, 1);
        struct sim_city one_bad[] = { { "x", 0, 0, 10 }, { "y", 95, 0, 10 } };
        struct sim_city empty[] = { { "x", 0, 0, 10 }, { "y", 1, 1, 0 } };
        struct collected c = { 0 };

        CHECK(sim_run(&p, world, 1, collect, &c, NULL) == -EINVAL);
        CHECK(sim_run(&p, one_bad, 2, collect, &c, NULL) == -EINVAL);
        CHECK(sim_run(&p, empty, 2, collect, &c, NULL) == -EINVAL);
        p.users = 0;
        CHECK(sim_run(&p, world, 3, collect, &c, NULL) == -EINVAL);
        p = small(10, 1);
        p.late_share = 1.5;
        CHECK(sim_run(&p, world, 3, collect, &c, NULL) == -EINVAL);
        p = small(10, 1);
        p.commuter_share = -0.1;
        CHECK(sim_run(&p, world, 3, collect, &c, NULL) == -EINVAL);
        p = small(10, 1);
        p.announced_share = 2;
        CHECK(sim_run(&p, world, 3, collect, &c, NULL) == -EINVAL);
        CHECK(c.n == 0);
        free(c.v);
}

TAP_MAIN(TAP_TEST(the_same_seed_is_the_same_fleet_and_another_seed_another),
         TAP_TEST(events_come_in_delivery_order_as_valid_reports),
         TAP_TEST(the_share_of_users_who_never_leave_home_is_as_asked),
         TAP_TEST(a_user_who_never_leaves_home_reports_from_home),
         TAP_TEST(trips_go_to_bigger_cities_in_proportion_to_their_population),
         TAP_TEST(trips_go_to_nearer_cities_by_the_square_of_their_distance),
         TAP_TEST(restores_on_working_days_come_in_the_local_morning),
         TAP_TEST(the_share_of_weekly_commuters_is_as_asked_and_they_fly_every_monday),
         TAP_TEST(the_share_of_business_trips_announced_is_as_asked_and_each_comes_ahead),
         TAP_TEST(bad_settings_and_worlds_are_refused))
