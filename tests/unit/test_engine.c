/* The placement decision at its edges. */
#include <string.h>

#include "geo/geo.h"
#include "scheduler/engine.h"
#include "tap.h"

/* Paris and Frankfurt, from the demo catalog. */
static const struct engine_site sites[] = {
        { "aws-eu-west-3", 48.86, 2.35 },
        { "aws-eu-central-1", 50.11, 8.68 },
};

static const struct engine_policy policy = { .margin_m = 50000 };

TEST(a_user_far_from_the_snapshot_moves_it_to_the_nearest_site) {
        struct engine_decision d;
        engine_decide(&policy, sites, 2, "aws-eu-central-1", 50.11, 8.68, 48.85, 2.35, &d);
        CHECK(d.outcome == ENGINE_MOVE);
        CHECK_STR(d.reason, "closer");
        CHECK(d.target == 0);
        CHECK(d.current_m > d.target_m);
}

TEST(a_user_already_nearest_stays) {
        struct engine_decision d;
        engine_decide(&policy, sites, 2, "aws-eu-west-3", 48.86, 2.35, 48.85, 2.30, &d);
        CHECK(d.outcome == ENGINE_STAY);
        CHECK_STR(d.reason, "already_nearest");
}

TEST(exactly_at_the_margin_stays_and_just_beyond_moves) {
        struct engine_decision d;
        double lat = 49.3, lon = 4.0;
        double gain;
        struct engine_policy p;

        engine_decide(&policy, sites, 2, "aws-eu-central-1", 50.11, 8.68, lat, lon, &d);
        gain = d.current_m - d.target_m;
        p.margin_m = gain;
        engine_decide(&p, sites, 2, "aws-eu-central-1", 50.11, 8.68, lat, lon, &d);
        CHECK(d.outcome == ENGINE_STAY);
        CHECK_STR(d.reason, "within_margin");
        p.margin_m = gain - 0.001;
        engine_decide(&p, sites, 2, "aws-eu-central-1", 50.11, 8.68, lat, lon, &d);
        CHECK(d.outcome == ENGINE_MOVE);
}

TEST(ties_go_to_the_smaller_id) {
        static const struct engine_site twins[] = { { "b-site", 10, 10 }, { "a-site", 10, 10 } };
        struct engine_decision d;
        engine_decide(&policy, twins, 2, "far", -40, -100, 10, 10, &d);
        CHECK(d.target == 1);
        CHECK(d.outcome == ENGINE_MOVE);
}

TEST(no_eligible_site_means_stay) {
        struct engine_decision d;
        engine_decide(&policy, NULL, 0, "aws-eu-west-3", 48.86, 2.35, 0, 0, &d);
        CHECK(d.outcome == ENGINE_STAY);
        CHECK_STR(d.reason, "no_eligible_site");
        CHECK(d.target == -1);
}

TEST(distances_are_geodesic_on_wgs84) {
        struct engine_decision d;
        engine_decide(&policy, sites, 2, "aws-eu-central-1", 50.11, 8.68, 48.86, 2.35, &d);
        CHECK_NEAR(d.current_m, geo_distance_m(48.86, 2.35, 50.11, 8.68), 1e-9);
        CHECK(d.target_m == 0.0);
}

TAP_MAIN(TAP_TEST(a_user_far_from_the_snapshot_moves_it_to_the_nearest_site),
         TAP_TEST(a_user_already_nearest_stays),
         TAP_TEST(exactly_at_the_margin_stays_and_just_beyond_moves),
         TAP_TEST(ties_go_to_the_smaller_id),
         TAP_TEST(no_eligible_site_means_stay),
         TAP_TEST(distances_are_geodesic_on_wgs84))
