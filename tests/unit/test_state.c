/*
 * state: the scheduler's user table finds every user it holds through
 * growth and deletions (backward shifting leaves no hole in a probe run),
 * forgets by id and by partition, and keeps a user's snapshots and devices,
 * including devices first seen after the user was loaded.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "scheduler/state.h"
#include "tap.h"

#define MANY 5000 /* past several doublings of the 1024 slots it starts with */

static struct tracked_user *add_plain(struct user_table *t, const char *id, int16_t partition) {
        return user_table_add(t, id, partition, NULL, 0, NULL, 0);
}

TEST(holds_users_with_their_snapshots_and_devices) {
        struct user_table *t = NULL;
        const char *snaps[] = { "snap-a", "snap-b" };
        const char *devs[] = { "d-1" };
        struct tracked_user *u;

        CHECK(user_table_new(&t) == 0);
        u = user_table_add(t, "u-1", 3, snaps, 2, devs, 1);
        CHECK(u != NULL);
        CHECK(user_table_find(t, "u-1") == u);
        CHECK(user_table_find(t, "u-2") == NULL);
        CHECK(user_table_count(t) == 1);
        CHECK_STR(u->id, "u-1");
        CHECK(u->partition == 3 && u->n_snapshots == 2 && u->n_devices == 1);
        CHECK_STR(user_snapshots(u)[0].id, "snap-a");
        CHECK_STR(user_snapshots(u)[1].id, "snap-b");
        CHECK(user_snapshots(u)[1].pending_transfer == 0);
        CHECK_STR(user_devices(u)[0].id, "d-1");
        CHECK(user_devices(u)[0].fix.ts_ms == 0);
        t = user_table_free(t);
        CHECK(t == NULL);
}

TEST(a_device_seen_later_is_added_once_and_the_known_ones_stay) {
        struct user_table *t = NULL;
        const char *devs[] = { "d-1", "d-2" };
        struct tracked_user *u;

        CHECK(user_table_new(&t) == 0);
        u = user_table_add(t, "u-1", 0, NULL, 0, devs, 2);
        user_devices(u)[1].fix.ts_ms = 42;
        CHECK(user_device(u, "d-2") == 1);
        CHECK(user_device(u, "d-3") == 2);
        CHECK(user_device(u, "d-3") == 2);
        CHECK(u->n_devices == 3);
        CHECK_STR(user_devices(u)[0].id, "d-1");
        CHECK(user_devices(u)[1].fix.ts_ms == 42); /* carried into the grown array */
        CHECK_STR(user_devices(u)[2].id, "d-3");
        CHECK(user_device(u, "d-4") == 3);
        CHECK(user_table_remove(t, "u-1"));
        CHECK(user_table_count(t) == 0);
        user_table_free(t);
}

TEST(every_user_is_found_through_growth_and_deletions) {
        struct user_table *t = NULL;
        char id[32];
        int missing = 0, wrong = 0;

        CHECK(user_table_new(&t) == 0);
        for (int i = 0; i < MANY; i++) {
                snprintf(id, sizeof(id), "u-%d", i);
                if (!add_plain(t, id, (int16_t)(i % 4)))
                        missing++;
        }
        CHECK(missing == 0);
        CHECK(user_table_count(t) == MANY);
        /* Remove every third: the rest must still be found, the removed not. */
        for (int i = 0; i < MANY; i += 3) {
                snprintf(id, sizeof(id), "u-%d", i);
                CHECK(user_table_remove(t, id));
        }
        for (int i = 0; i < MANY; i++) {
                struct tracked_user *u;
                snprintf(id, sizeof(id), "u-%d", i);
                u = user_table_find(t, id);
                if (i % 3 == 0 ? u != NULL : (u == NULL || strcmp(u->id, id) != 0))
                        wrong++;
        }
        CHECK(wrong == 0);
        CHECK(!user_table_remove(t, "u-0"));
        CHECK(user_table_count(t) == MANY - (MANY + 2) / 3);
        user_table_free(t);
}

TEST(dropping_a_partition_forgets_its_users_only) {
        struct user_table *t = NULL;
        char id[32];
        int wrong = 0;

        CHECK(user_table_new(&t) == 0);
        for (int i = 0; i < MANY; i++) {
                snprintf(id, sizeof(id), "u-%d", i);
                add_plain(t, id, (int16_t)(i % 4));
        }
        user_table_drop_partition(t, 2);
        for (int i = 0; i < MANY; i++) {
                snprintf(id, sizeof(id), "u-%d", i);
                if ((user_table_find(t, id) != NULL) != (i % 4 != 2))
                        wrong++;
        }
        CHECK(wrong == 0);
        CHECK(user_table_count(t) == MANY - MANY / 4);
        user_table_drop_partition(t, -1);
        CHECK(user_table_count(t) == 0);
        CHECK(user_table_find(t, "u-1") == NULL);
        user_table_free(t);
}

TAP_MAIN(TAP_TEST(holds_users_with_their_snapshots_and_devices),
         TAP_TEST(a_device_seen_later_is_added_once_and_the_known_ones_stay),
         TAP_TEST(every_user_is_found_through_growth_and_deletions),
         TAP_TEST(dropping_a_partition_forgets_its_users_only))
