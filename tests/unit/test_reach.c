/*
 * reach: the replica pass's memory of where each snapshot's user was when
 * its replicas were chosen — a move below the radius changes nothing, one
 * at or beyond it, to an unknown snapshot or one planned without a location
 * does; the radius is half the gap between the farthest chosen site and the
 * nearest left out; only the snapshots a move may change are watched; the
 * table keeps every snapshot through growth.
 */
#include <math.h>
#include <stdio.h>

#include "geo/geo.h"
#include "scheduler/reach.h"
#include "tap.h"

TEST(the_radius_is_half_the_gap_to_the_nearest_left_out) {
        double chosen[] = { 100e3, 400e3 }, left[] = { 900e3, 700e3 }, tie[] = { 400e3 };

        CHECK(replica_reach_radius(chosen, 2, left, 2) == 150e3);
        CHECK(isinf(replica_reach_radius(chosen, 2, NULL, 0))); /* none left out */
        CHECK(isinf(replica_reach_radius(NULL, 0, left, 2)));   /* none chosen */
        CHECK(replica_reach_radius(chosen, 2, tie, 1) == 0);    /* a tie: any move */
        CHECK(replica_reach_radius(left, 2, chosen, 2) == 0);   /* left out nearer */
}

TEST(a_move_below_the_radius_changes_nothing) {
        struct replica_reach *m = NULL;
        double lat = 48.86, lon = 2.35, north = 1000.0 / 111320; /* about 1 km */

        CHECK(replica_reach_new(&m) == 0);
        CHECK(replica_reach_moved(m, "snap-1", lat, lon)); /* never planned */
        CHECK(replica_reach_put(m, "snap-1", lat, lon, 2000) == 0);
        CHECK(!replica_reach_moved(m, "snap-1", lat, lon));
        CHECK(!replica_reach_moved(m, "snap-1", lat + north, lon));
        CHECK(replica_reach_moved(m, "snap-1", lat + 3 * north, lon));
        CHECK(replica_reach_moved(m, "snap-1", NAN, NAN)); /* a location lost */
        /* Planned again further north: measured from there. */
        CHECK(replica_reach_put(m, "snap-1", lat + 3 * north, lon, 2000) == 0);
        CHECK(!replica_reach_moved(m, "snap-1", lat + 3 * north, lon));
        CHECK(replica_reach_count(m) == 1);
        /* Planned without a location: any location changes it. */
        CHECK(replica_reach_put(m, "snap-2", NAN, NAN, 0) == 0);
        CHECK(replica_reach_moved(m, "snap-2", lat, lon));
        /* A radius of 0: every report changes it; an infinite one: none. */
        CHECK(replica_reach_put(m, "snap-3", lat, lon, 0) == 0);
        CHECK(replica_reach_moved(m, "snap-3", lat, lon));
        CHECK(replica_reach_put(m, "snap-4", lat, lon, INFINITY) == 0);
        CHECK(!replica_reach_moved(m, "snap-4", -33.87, 151.21));
        replica_reach_clear(m);
        CHECK(replica_reach_count(m) == 0);
        CHECK(replica_reach_moved(m, "snap-4", lat, lon));
        m = replica_reach_free(m);
        CHECK(m == NULL);
}

static void count_watched(void *userdata, const char *snapshot) {
        (void)snapshot;
        ++*(int *)userdata;
}

TEST(only_the_snapshots_a_move_may_change_are_watched) {
        struct replica_reach *m = NULL;
        int n = 0;

        CHECK(replica_reach_new(&m) == 0);
        CHECK(replica_reach_put(m, "snap-gap", 1, 2, 5000) == 0);
        CHECK(replica_reach_put(m, "snap-tie", 1, 2, 0) == 0);
        CHECK(replica_reach_put(m, "snap-nowhere", NAN, NAN, INFINITY) == 0);
        CHECK(replica_reach_put(m, "snap-alone", 1, 2, INFINITY) == 0);
        replica_reach_each_watched(m, count_watched, &n);
        CHECK(n == 3);
        m = replica_reach_free(m);
}

TEST(every_snapshot_is_found_through_growth) {
        struct replica_reach *m = NULL;
        char id[32];
        int missing = 0;

        CHECK(replica_reach_new(&m) == 0);
        for (int i = 0; i < 5000; i++) {
                snprintf(id, sizeof(id), "snap-%d", i);
                CHECK(replica_reach_put(m, id, 10, i % 100, INFINITY) == 0);
        }
        CHECK(replica_reach_count(m) == 5000);
        for (int i = 0; i < 5000; i++) {
                snprintf(id, sizeof(id), "snap-%d", i);
                missing += replica_reach_moved(m, id, 0, 0);
        }
        CHECK(missing == 0);
        CHECK(replica_reach_moved(m, "snap-5000", 0, 0));
        m = replica_reach_free(m);
}

TAP_MAIN(TAP_TEST(the_radius_is_half_the_gap_to_the_nearest_left_out),
         TAP_TEST(a_move_below_the_radius_changes_nothing),
         TAP_TEST(only_the_snapshots_a_move_may_change_are_watched),
         TAP_TEST(every_snapshot_is_found_through_growth))
