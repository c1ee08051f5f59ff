/*
 * The scheduler's periodic work, in a thread of its own beside the consumer
 * loop, so that no report waits for it: following the sites set down
 * outside the API (failover.c), cancelling the transfers in flight that the
 * zones no longer allow (residency.c), the replica pass (replicas.c), the
 * pre-staging pass (prestage.c) and the evacuation step (evacuate.c).
 * Inline, between batches, the replica pass alone held the loop for seconds
 * at 20,000 snapshots.
 *
 * Why running beside the loop is safe. The thread has its own PostgreSQL
 * connection and its own catalog (struct upkeep: nothing of the loop's
 * memory is reachable from it; the configuration is read only, and the log
 * writes a line at once). Each piece of work is one transaction whose every
 * choice is made from what it reads in it, and each already ran beside
 * other schedulers' batches, so PostgreSQL arbitrates as it did then: one
 * open move per snapshot and one open replicate per snapshot and target
 * (unique indexes), activation fenced in homing_transfer_succeeded, a site
 * failed over once (its row locked), one replica pass and one evacuation
 * step at a time (advisory locks), offsets advanced only from the value
 * read (homing_advance_offsets). A batch that meets the thread's row locks
 * waits for them, or on a deadlock rolls back and is read again (-EAGAIN),
 * as against another scheduler. What the thread changes reaches the loop's
 * memory the way another scheduler's changes do: the loop's look for
 * changed users (load.c) forgets those users. As a pass can take longer
 * than that look's overlap, the look also reaches back to when the
 * earliest pass that ended since the last look began
 * (scheduler_upkeep_take_began).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "base/clock.h"
#include "base/config.h"
#include "base/log.h"
#include "scheduler/internal.h"
#include "scheduler/world.h"
#include "store/store.h"

struct upkeep_thread {
        struct upkeep u;
        pthread_t thread;
        atomic_bool quit;
        pthread_mutex_t lock;
        int64_t began_us; /* under lock: the earliest begin of the passes ended; -1 none */
};

/* Sleeps about `ms`, less when asked to quit. */
static void nap(struct upkeep_thread *t, int64_t ms) {
        for (int64_t end = clock_mono_ms() + ms; !atomic_load(&t->quit) && clock_mono_ms() < end;)
                nanosleep(&(struct timespec){ 0, 50 * 1000 * 1000 }, NULL);
}

/* PostgreSQL's time in µs since the epoch, or -1. */
static int64_t pg_now_us(struct store *db) {
        struct store_result *res = NULL;
        int64_t us = -1;

        if (store_exec(db, "SELECT (extract(epoch FROM now()) * 1000000)::int8", 0, NULL, &res) ==
            0)
                us = store_int(res, 0, 0);
        store_result_free(res);
        return us;
}

static void ended_pass(struct upkeep_thread *t, int64_t began_us) {
        pthread_mutex_lock(&t->lock);
        if (t->began_us < 0 || began_us < t->began_us)
                t->began_us = began_us;
        pthread_mutex_unlock(&t->lock);
}

static void *upkeep_main(void *arg) {
        struct upkeep_thread *t = arg;
        const struct config *cfg = t->u.cfg;
        time_t loaded_at = 0, replicas_at = 0, prestaged_at = 0, evacuated_at = 0;

        while (store_connect(cfg->pg_dsn, &t->u.db) < 0) {
                nap(t, 1000);
                if (atomic_load(&t->quit))
                        return NULL;
        }
        while (!atomic_load(&t->quit)) {
                bool refresh = time(NULL) - loaded_at >= cfg->catalog_refresh_s;
                /* Switchovers wait on agents, not on reports: about once a second. */
                bool evacuate = time(NULL) != evacuated_at;
                int64_t began_us, t0 = clock_mono_us();

                if (!refresh && !evacuate) {
                        nap(t, 100);
                        continue;
                }
                /* Without PostgreSQL nothing below would do anything. */
                began_us = pg_now_us(t->u.db);
                if (began_us < 0) {
                        nap(t, 1000);
                        continue;
                }
                if (refresh) {
                        /* On failure the last view stays. The passes that plan
                         * copies wait for a fresh one: the incremental replica
                         * pass would otherwise settle a changed catalog's
                         * full-again pass with the old view and then leave
                         * those plans alone until its next full pass. */
                        bool fresh = world_load(t->u.world, t->u.db) == 0;
                        scheduler_follow_failovers(&t->u);
                        scheduler_cancel_outside_zones(&t->u);
                        loaded_at = time(NULL);
                        if (fresh && cfg->replica_pass_s > 0 &&
                            loaded_at - replicas_at >= cfg->replica_pass_s) {
                                scheduler_keep_replicas(&t->u);
                                replicas_at = time(NULL);
                        }
                        if (fresh && cfg->prestage_pass_s > 0 &&
                            loaded_at - prestaged_at >= cfg->prestage_pass_s) {
                                scheduler_prestage(&t->u);
                                prestaged_at = time(NULL);
                        }
                }
                if (evacuate) {
                        scheduler_run_evacuations(&t->u);
                        evacuated_at = time(NULL);
                }
                ended_pass(t, began_us);
                if (refresh)
                        log_debug("scheduler", "upkeep pass: %lld us",
                                  (long long)(clock_mono_us() - t0));
        }
        return NULL;
}

int scheduler_upkeep_start(const struct config *cfg, struct upkeep_thread **out) {
        struct upkeep_thread *t = calloc(1, sizeof(*t));
        int r;

        if (!t)
                return -ENOMEM;
        t->u.cfg = cfg;
        t->began_us = -1;
        atomic_init(&t->quit, false);
        pthread_mutex_init(&t->lock, NULL);
        r = world_new(&t->u.world);
        if (r == 0) {
                r = -pthread_create(&t->thread, NULL, upkeep_main, t);
                if (r < 0)
                        t->u.world = world_free(t->u.world);
        }
        if (r < 0) {
                pthread_mutex_destroy(&t->lock);
                free(t);
                return r;
        }
        *out = t;
        return 0;
}

struct upkeep_thread *scheduler_upkeep_stop(struct upkeep_thread *t) {
        if (!t)
                return NULL;
        atomic_store(&t->quit, true);
        pthread_join(t->thread, NULL);
        t->u.db = store_free(t->u.db);
        t->u.world = world_free(t->u.world);
        t->u.replicas = scheduler_replica_memory_free(t->u.replicas);
        pthread_mutex_destroy(&t->lock);
        free(t);
        return NULL;
}

int64_t scheduler_upkeep_take_began(struct upkeep_thread *t) {
        int64_t began_us;

        if (!t)
                return -1;
        pthread_mutex_lock(&t->lock);
        began_us = t->began_us;
        t->began_us = -1;
        pthread_mutex_unlock(&t->lock);
        return began_us;
}

void scheduler_upkeep_give_back_began(struct upkeep_thread *t, int64_t began_us) {
        if (t && began_us >= 0)
                ended_pass(t, began_us);
}
