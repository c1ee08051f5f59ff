/*
 * bench-engine — reports per second through the decision engine alone, with
 * every user's state in memory, and the memory each tracked user costs.
 *
 * 1,000 datacenters at random places, 1,000,000 users (one device, one
 * snapshot each, at a random datacenter), reports at random places with
 * rising timestamps. Each report is what the scheduler does per report in
 * memory: find the user, judge the report, decide for its snapshot.
 *
 * usage: bench-engine [users] [sites] [reports]
 */
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "geo/geo.h"
#include "scheduler/engine.h"
#include "scheduler/state.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static double uniform(void) {
        /* xorshift64*: fast, and the same sequence every run */
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return (double)((rng_state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

/* A point uniform on the sphere (not uniform in latitude). */
static void random_point(double *lat, double *lon) {
        *lat = asin(2 * uniform() - 1) * 180 / M_PI;
        *lon = uniform() * 360 - 180;
}

int main(int argc, char **argv) {
        size_t n_users = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
        size_t n_sites = argc > 2 ? strtoul(argv[2], NULL, 10) : 1000;
        size_t n_reports = argc > 3 ? strtoul(argv[3], NULL, 10) : 2000000;
        geo_site *sites = calloc(n_sites, sizeof(*sites));
        char(*site_ids)[32] = calloc(n_sites, sizeof(*site_ids));
        uint64_t replicas[(1000000 / 64) + 1] = { 0 };
        struct engine_template tpl = { 10ULL << 30, replicas, n_sites / 64 + 1 };
        struct engine_zone_set anywhere = { NULL, 0 };
        struct engine_context ctx;
        struct engine_policy policy;
        struct user_table *users = NULL;
        geo_index *index = NULL;
        int status = 1;
        struct mallinfo2 before, after;
        unsigned long outcomes[3] = { 0 };
        double t0, t1;
        char id[32];

        for (size_t i = 0; i < n_sites; i++) {
                snprintf(site_ids[i], sizeof(site_ids[i]), "dc-%04zu", i);
                sites[i].id = site_ids[i];
                random_point(&sites[i].lat, &sites[i].lon);
                sites[i].status = i % 50 == 0 ? GEO_SITE_DRAINING : GEO_SITE_ACTIVE;
                sites[i].free_bytes = 1ULL << 50;
                if (i % 3 == 0)
                        replicas[i / 64] |= 1ULL << (i % 64);
        }
        if (geo_index_new(&index, sites, n_sites, NULL, 0) < 0)
                goto out;
        ctx = (struct engine_context){ index, &tpl, 1, &anywhere, 1 };
        engine_policy_defaults(&policy);

        /* The state of every user, as the scheduler holds it. */
        before = mallinfo2();
        if (user_table_new(&users) < 0)
                goto out;
        for (size_t u = 0; u < n_users; u++) {
                char snap_id[32], dev_id[32];
                const char *snaps[] = { snap_id }, *devs[] = { dev_id };
                struct tracked_user *tu;
                snprintf(id, sizeof(id), "u-%07zu", u);
                snprintf(snap_id, sizeof(snap_id), "snap-u-%07zu", u);
                snprintf(dev_id, sizeof(dev_id), "d-%07zu", u);
                tu = user_table_add(users, id, (int16_t)(u % 6), snaps, 1, devs, 1);
                if (!tu)
                        goto out;
                engine_snapshot_init(&user_snapshots(tu)[0].policy, (uint32_t)(uniform() * n_sites),
                                     0, (2 + u % 7) * (1ULL << 30), 0);
        }
        after = mallinfo2();

        t0 = clock_mono_s();
        for (size_t r = 0; r < n_reports; r++) {
                struct tracked_user *tu;
                struct tracked_device *dev;
                struct engine_decision d;
                double lat, lon;
                int64_t ts = 1795633200000LL + (int64_t)r * 1000;
                size_t u = (size_t)(uniform() * n_users);

                snprintf(id, sizeof(id), "u-%07zu", u);
                tu = user_table_find(users, id);
                dev = &user_devices(tu)[0];
                random_point(&lat, &lon);
                /* Half the reports come from near the last fix, as a settled user's do. */
                if (dev->fix.ts_ms && r % 2) {
                        lat = dev->fix.lat + (uniform() - 0.5) * 0.01;
                        lon = dev->fix.lon + (uniform() - 0.5) * 0.01;
                        if (lat > 90 || lat < -90 || lon > 180 || lon < -180)
                                continue;
                }
                if (engine_check_report(&policy, &dev->fix, lat, lon, 20, ts, ts) != ENGINE_OK) {
                        outcomes[ENGINE_DROP]++;
                        continue;
                }
                if (engine_decide(&policy, &ctx, &user_snapshots(tu)[0].policy, lat, lon, ts, &d) <
                    0)
                        goto out;
                outcomes[d.outcome]++;
        }
        t1 = clock_mono_s();

        printf("decision engine: %zu users, %zu datacenters, %zu reports\n", n_users, n_sites,
               n_reports);
        printf("  %.0f reports/s on one core (%.2f us per report)\n", n_reports / (t1 - t0),
               (t1 - t0) / n_reports * 1e6);
        printf("  outcomes: %lu stay, %lu move, %lu dropped as not credible\n",
               outcomes[ENGINE_STAY], outcomes[ENGINE_MOVE], outcomes[ENGINE_DROP]);
        printf("  memory per tracked user: %.0f bytes (one device and one snapshot, ids of 9 to\n"
               "  14 characters, its slot in the table; sizeof: user %zu, device %zu, snapshot %zu)\n",
               (double)(after.uordblks - before.uordblks) / n_users, sizeof(struct tracked_user),
               sizeof(struct tracked_device), sizeof(struct tracked_snapshot));
        status = 0;
out:
        user_table_free(users);
        geo_index_unref(index);
        free(sites);
        free(site_ids);
        return status;
}
