/*
 * The consumer loop. Reports arrive in batches; each batch is decided in
 * memory (engine.c over the state in state.c) and its effects — device
 * fixes, policy state, decisions, transfers, outbox rows — commit in one
 * PostgreSQL transaction together with the advanced offsets.
 *
 * Offsets live in PostgreSQL, not in Kafka, and their update is conditional
 * on the value this process last saw: a process that lost its partitions (a
 * rebalance, a pause, a zombie) cannot commit what another already did; it
 * rolls back, forgets its in-memory state and reads again. On assignment
 * each partition resumes from PostgreSQL's offset, and a user's state is
 * loaded from PostgreSQL the first time one of its reports comes.
 */
#include "scheduler/scheduler.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/config.h"
#include "base/hash.h"
#include "base/log.h"
#include "bus/bus.h"
#include "metrics/metrics.h"
#include "report/report.h"
#include "scheduler/engine.h"
#include "scheduler/internal.h"
#include "scheduler/state.h"
#include "scheduler/world.h"
#include "store/store.h"

#define MAX_PARTITIONS 1024

/* For /readyz in a process that also serves the API: the group has taken us in. */
static atomic_bool consumer_assigned;

bool scheduler_consumer_assigned(void) {
        return atomic_load(&consumer_assigned);
}

/*
 * A partition's reading is trusted only while the consumer delivers exactly
 * the offsets that follow what PostgreSQL holds: `expect` is checked against
 * every message. When that cannot be known (a batch failed, PostgreSQL does
 * not answer, a seek failed) the partition is held: paused, its messages
 * ignored, until a rewind puts it back where PostgreSQL says.
 */
struct partition_state {
        bool assigned;
        bool stored;    /* a row exists in consumer_offsets */
        bool held;      /* paused until a rewind succeeds */
        int64_t next;   /* the next offset to process, as PostgreSQL has it */
        int64_t expect; /* the offset the next message must carry; -1: the first there is */
        int64_t isolate_through; /* a statement failed on a batch up to here: one at a time */
};

/* A report of the batch, decoded. */
struct batch_report {
        struct report report;
        int32_t partition;
        int64_t offset;
        struct tracked_user *user;
};

/*
 * A credible fix to persist; the latest (by the device's clock) of each
 * device id wins, whoever's it is: device_locations is keyed by the device
 * alone, and two rows for one key in one statement would fail it, every time.
 */
struct device_update {
        struct tracked_user *user;
        const char *device_id; /* borrowed from the user's tracked device */
        uint16_t device;
        uint32_t seq; /* order in the batch */
        double lat, lon; /* as reported: the fix in memory is single precision */
        double accuracy_m;
        int64_t ts_ms, received_ms;
};

/* A decision to record: every move, and a stay whose reason changed. */
struct decision_record {
        struct tracked_user *user;
        uint16_t snapshot;
        size_t report; /* index into the batch */
        struct engine_decision decision;
};

/* A snapshot whose policy state changed; may be listed more than once. */
struct dirty_snapshot {
        struct tracked_user *user;
        uint16_t snapshot;
};

struct scheduler {
        const struct config *cfg;
        struct store *db;
        struct bus_consumer *consumer;
        struct engine_policy policy;
        struct world *world;
        struct user_table *users;
        time_t world_loaded_at;
        char changes_seen_at[40]; /* PostgreSQL time of the last look for changes */

        struct bus_message **messages;
        size_t n_messages;
        struct batch_report *reports;
        struct device_update *devices;
        size_t n_devices;
        struct decision_record *decisions;
        size_t n_decisions, cap_decisions;
        struct dirty_snapshot *dirty;
        size_t n_dirty, cap_dirty;
        unsigned long drops[ENGINE_REASON_COUNT];

        struct partition_state parts[MAX_PARTITIONS];
        int64_t next_rewind_ms;
        unsigned long reports_total, invalid_total, moves_total, drops_total, quarantined_total;

        /* what /metrics says; the batch's tallies are counted once it commits */
        struct metrics_counter *m_decisions;  /* {outcome, reason} */
        struct metrics_counter *m_dropped;    /* {reason} */
        struct metrics_counter *m_reports, *m_invalid, *m_superseded, *m_quarantined;
        struct metrics_counter *m_rollbacks;  /* {cause} */
        struct metrics_histogram *m_batch_seconds, *m_batch_reports, *m_decide_seconds;
        struct metrics_gauge *m_partitions;
        struct metrics_fn *m_lag;
        pthread_mutex_t lag_lock;
        int64_t lag[MAX_PARTITIONS];          /* -1: not ours, or not known */
        unsigned long tally_decisions[2][ENGINE_REASON_COUNT];
        unsigned long tally_superseded, tally_invalid;
};

/* ---- metrics ---- */

/* Per partition this process holds: messages in Kafka it has not committed. */
static void emit_lag(void *userdata, struct metrics_emitter *e) {
        struct scheduler *s = userdata;
        char partition[16];

        pthread_mutex_lock(&s->lag_lock);
        for (int32_t p = 0; p < MAX_PARTITIONS; p++) {
                if (s->lag[p] < 0)
                        continue;
                snprintf(partition, sizeof(partition), "%d", p);
                metrics_emit(e, (const char *[]){ s->cfg->topic_locations, partition },
                             (double)s->lag[p]);
        }
        pthread_mutex_unlock(&s->lag_lock);
}

static void update_lag(struct scheduler *s) {
        size_t assigned = 0;

        pthread_mutex_lock(&s->lag_lock);
        for (int32_t p = 0; p < MAX_PARTITIONS; p++) {
                int64_t high;
                s->lag[p] = -1;
                if (!s->parts[p].assigned)
                        continue;
                assigned++;
                if (bus_consumer_high_watermark(s->consumer, p, &high) == 0)
                        s->lag[p] = high - (s->parts[p].stored ? s->parts[p].next : 0);
        }
        pthread_mutex_unlock(&s->lag_lock);
        metrics_gauge_set(s->m_partitions, NULL, (double)assigned);
}

static int register_metrics(struct scheduler *s, struct metrics *m) {
        static const char *outcomes[] = { "stay", "move", NULL };
        static const char *causes[] = { "conflict", "error", NULL };
        static const char *components[] = { "scheduler", "relay", NULL };
        static const char *decided[ENGINE_DOWN - ENGINE_CLOSER + 2];
        static const char *dropped[ENGINE_FUTURE - ENGINE_LOW_ACCURACY + 2];
        static const double batch_sizes[] = { 1, 10, 50, 100, 250, 500, 1000, 2500, 5000 };
        static const char *lag_labels[] = { "topic", "partition", NULL };
        int r;

        for (int i = ENGINE_CLOSER; i <= ENGINE_DOWN; i++)
                decided[i - ENGINE_CLOSER] = engine_reason_name((enum engine_reason)i);
        for (int i = ENGINE_LOW_ACCURACY; i <= ENGINE_FUTURE; i++)
                dropped[i - ENGINE_LOW_ACCURACY] = engine_reason_name((enum engine_reason)i);
        if ((r = metrics_counter_register(
                     m, "homing_decisions_total",
                     "Placement decisions by outcome and the rule that decided.",
                     (const struct metrics_label[]){
                             { "outcome", outcomes }, { "reason", decided }, { NULL, NULL } },
                     &s->m_decisions)) < 0 ||
            (r = metrics_counter_register(
                     m, "homing_scheduler_reports_dropped_total",
                     "Reports not credible enough to decide on, by why.",
                     (const struct metrics_label[]){ { "reason", dropped }, { NULL, NULL } },
                     &s->m_dropped)) < 0 ||
            (r = metrics_counter_register(m, "homing_scheduler_reports_total",
                                          "Reports the scheduler committed.", NULL,
                                          &s->m_reports)) < 0 ||
            (r = metrics_counter_register(m, "homing_scheduler_reports_invalid_total",
                                          "Messages on the topic that were not reports.", NULL,
                                          &s->m_invalid)) < 0 ||
            (r = metrics_counter_register(
                     m, "homing_scheduler_reports_quarantined_total",
                     "Reports set aside in dead_letters: their effects failed on their own, every time.",
                     NULL, &s->m_quarantined)) < 0 ||
            (r = metrics_counter_register(m, "homing_transfers_superseded_total",
                                          "Transfers in flight cancelled for a closer target.",
                                          NULL, &s->m_superseded)) < 0 ||
            (r = metrics_counter_register(
                     m, "homing_scheduler_rollbacks_total",
                     "Batches rolled back: another scheduler got there first, or an error.",
                     (const struct metrics_label[]){ { "cause", causes }, { NULL, NULL } },
                     &s->m_rollbacks)) < 0 ||
            (r = metrics_histogram_register(
                     m, "homing_pg_transaction_duration_seconds",
                     "PostgreSQL transactions, begin to commit or rollback.",
                     (const struct metrics_label[]){ { "component", components }, { NULL, NULL } },
                     metrics_buckets_request, METRICS_N_BUCKETS_REQUEST, &s->m_batch_seconds)) < 0 ||
            (r = metrics_histogram_register(m, "homing_scheduler_batch_reports",
                                            "Reports per committed batch.", NULL, batch_sizes,
                                            sizeof(batch_sizes) / sizeof(batch_sizes[0]),
                                            &s->m_batch_reports)) < 0 ||
            (r = metrics_histogram_register(
                     m, "homing_decide_duration_seconds",
                     "One decision: the nearest eligible datacenter and the policy.", NULL,
                     metrics_buckets_fast, METRICS_N_BUCKETS_FAST, &s->m_decide_seconds)) < 0 ||
            (r = metrics_gauge_register(m, "homing_consumer_partitions_assigned",
                                        "Partitions of the locations topic this process holds.",
                                        NULL, &s->m_partitions)) < 0 ||
            (r = metrics_gauge_fn_labelled(
                     m, "homing_consumer_lag_messages",
                     "Reports in Kafka this process has not committed yet, per partition it holds.",
                     lag_labels, emit_lag, s, &s->m_lag)) < 0)
                log_error("scheduler", "cannot register the scheduler's metrics: %s",
                          strerror(-r));
        return r;
}

/* ---- partitions and offsets ---- */

static int read_offsets(struct scheduler *s, struct store_result **res) {
        const char *params[2] = { s->cfg->consumer_group, s->cfg->topic_locations };
        return store_exec(s->db, "SELECT partition, next_offset FROM consumer_offsets "
                                 "WHERE group_id = $1 AND topic = $2", 2, params, res);
}

/* Takes what PostgreSQL says of one partition; returns where to read from. */
static int64_t take_offset(struct partition_state *p, int32_t partition,
                           const struct store_result *res) {
        p->stored = false;
        for (size_t row = 0; row < store_rows(res); row++) {
                if (store_int(res, row, 0) == partition) {
                        p->stored = true;
                        p->next = store_int(res, row, 1);
                }
        }
        p->expect = p->stored ? p->next : -1;
        p->held = false;
        return p->stored ? p->next : BUS_OFFSET_BEGINNING;
}

static int on_assign(void *ctx, struct bus_partition *parts, size_t n) {
        struct scheduler *s = ctx;
        struct store_result *res = NULL;
        int r;

        for (size_t i = 0; i < n; i++)
                if (parts[i].partition < 0 || parts[i].partition >= MAX_PARTITIONS)
                        return -ERANGE;
        /* Without PostgreSQL the start is unknown: hold them until it answers. */
        r = read_offsets(s, &res);
        for (size_t i = 0; i < n; i++) {
                struct partition_state *p = &s->parts[parts[i].partition];
                *p = (struct partition_state){ .assigned = true, .held = true,
                                               .isolate_through = -1 };
                parts[i].offset = r == 0 ? take_offset(p, parts[i].partition, res)
                                         : BUS_OFFSET_HOLD;
                /* Whatever we knew of its users may be stale now. */
                user_table_drop_partition(s->users, parts[i].partition);
        }
        store_result_free(res);
        if (r < 0)
                log_warn("scheduler", "cannot read the offsets of %zu assigned partitions; "
                                      "holding them until PostgreSQL answers", n);
        atomic_store(&consumer_assigned, true);
        return 0;
}

static int batch_commit(struct scheduler *s);

static void on_revoke(void *ctx, const struct bus_partition *parts, size_t n) {
        struct scheduler *s = ctx;

        /* Finish what we hold before the partitions go to another process. */
        batch_commit(s);
        for (size_t i = 0; i < n; i++) {
                if (parts[i].partition >= 0 && parts[i].partition < MAX_PARTITIONS) {
                        s->parts[parts[i].partition].assigned = false;
                        user_table_drop_partition(s->users, parts[i].partition);
                }
        }
}

/*
 * Advances a partition's stored offset from what we last saw; 0 rows means we
 * lost it. `first` is the batch's first offset there: anything but the stored
 * next one would skip reports, and is refused.
 */
static int advance_offset(struct scheduler *s, int32_t partition, int64_t first, int64_t next) {
        char part[16], next_s[32], expected[32];
        const char *params[5] = { s->cfg->consumer_group, s->cfg->topic_locations, part, next_s,
                                  expected };
        struct partition_state *p = &s->parts[partition];
        struct store_result *res = NULL;
        int r;

        if (p->stored && first != p->next) {
                log_error("scheduler", "partition %d: a batch from offset %lld where %lld is due; "
                                       "not committed", partition, (long long)first,
                          (long long)p->next);
                return -ESPIPE;
        }
        snprintf(part, sizeof(part), "%d", partition);
        snprintf(next_s, sizeof(next_s), "%lld", (long long)next);
        snprintf(expected, sizeof(expected), "%lld", (long long)p->next);
        if (p->stored)
                r = store_exec(s->db,
                               "UPDATE consumer_offsets SET next_offset = $4, updated_at = now()"
                               " WHERE group_id = $1 AND topic = $2 AND partition = $3"
                               " AND next_offset = $5",
                               5, params, &res);
        else
                r = store_exec(s->db,
                               "INSERT INTO consumer_offsets (group_id, topic, partition, next_offset)"
                               " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                               4, params, &res);
        if (r == 0 && store_changed(res) != 1)
                r = -ESTALE;
        store_result_free(res);
        return r;
}

static void hold_partition(struct scheduler *s, int32_t partition) {
        struct partition_state *p = &s->parts[partition];
        if (!p->assigned || p->held)
                return;
        p->held = true;
        bus_consumer_pause(s->consumer, partition); /* held messages are ignored anyway */
}

/*
 * After a failed batch: memory ran ahead of PostgreSQL; forget it and hold
 * all, to be rewound in `delay_ms` (a lost race or a bad report: at once).
 */
static void hold_partitions(struct scheduler *s, int64_t delay_ms) {
        user_table_drop_partition(s->users, -1);
        for (int32_t p = 0; p < MAX_PARTITIONS; p++)
                hold_partition(s, p);
        s->next_rewind_ms = clock_mono_ms() + delay_ms;
}

static bool any_held(const struct scheduler *s) {
        for (int32_t p = 0; p < MAX_PARTITIONS; p++)
                if (s->parts[p].assigned && s->parts[p].held)
                        return true;
        return false;
}

/*
 * Puts every held partition where PostgreSQL says and lets it run again.
 * Returns 0, or <0 when some stay held (PostgreSQL or a seek failed).
 */
static int rewind_partitions(struct scheduler *s) {
        struct store_result *res = NULL;
        size_t released = 0;
        int r;

        r = read_offsets(s, &res);
        if (r < 0)
                return r;
        for (int32_t p = 0; p < MAX_PARTITIONS; p++) {
                struct partition_state *part = &s->parts[p];
                int64_t from;
                if (!part->assigned || !part->held)
                        continue;
                from = take_offset(part, p, res);
                if (bus_consumer_seek(s->consumer, p, from) < 0 ||
                    bus_consumer_resume(s->consumer, p) < 0) {
                        part->held = true;
                        r = -EIO;
                        continue;
                }
                user_table_drop_partition(s->users, p);
                released++;
        }
        store_result_free(res);
        if (released)
                log_info("scheduler", "%zu partitions resume from the offsets PostgreSQL holds",
                         released);
        return r;
}

/* Whether the next batch must be one report: a statement failed on a batch. */
static bool isolating(const struct scheduler *s) {
        for (int32_t p = 0; p < MAX_PARTITIONS; p++) {
                const struct partition_state *part = &s->parts[p];
                if (part->assigned && part->isolate_through >= 0 &&
                    (!part->stored || part->next <= part->isolate_through))
                        return true;
        }
        return false;
}

/* ---- loading users ---- */

/* A user of the batch to load, and the partition its reports come from. */
struct missing_user {
        const char *id;
        int16_t partition;
};

static int cmp_missing(const void *a, const void *b) {
        return strcmp(((const struct missing_user *)a)->id, ((const struct missing_user *)b)->id);
}

/* The rows of `res` whose column 0 is `id`, from *row on (rows sorted by column 0). */
static size_t rows_of(const struct store_result *res, size_t *row, const char *id) {
        size_t n = 0;
        while (*row < store_rows(res) && strcmp(store_text(res, *row, 0), id) < 0)
                (*row)++;
        while (*row + n < store_rows(res) && !strcmp(store_text(res, *row + n, 0), id))
                n++;
        return n;
}

/*
 * Loads every user of the batch that is not in memory yet, with two
 * queries; rows come sorted by user id (byte order), as the missing ids are.
 */
static int load_users(struct scheduler *s) {
        struct missing_user *missing = calloc(s->n_messages + 1, sizeof(*missing));
        const char **snap_ids = NULL, **dev_ids = NULL;
        struct store_array ids;
        struct store_result *snaps = NULL, *devices = NULL;
        const char *param[1];
        size_t n_missing = 0, snap_row = 0, dev_row = 0;
        int r = 0;

        store_array_init(&ids);
        if (!missing)
                return -ENOMEM;
        for (size_t i = 0; i < s->n_messages; i++) {
                const struct batch_report *b = &s->reports[i];
                if (b->report.user_id[0] && !user_table_find(s->users, b->report.user_id))
                        missing[n_missing++] = (struct missing_user){ b->report.user_id,
                                                                      (int16_t)b->partition };
        }
        qsort(missing, n_missing, sizeof(*missing), cmp_missing);
        for (size_t i = 0; i < n_missing; i++)
                if (i == 0 || strcmp(missing[i].id, missing[i - 1].id) != 0)
                        store_array_add_text(&ids, missing[i].id);
        if (ids.n == 0)
                goto out;
        param[0] = store_array_text(&ids);
        if (!param[0]) {
                r = -ENOMEM;
                goto out;
        }
        r = store_exec(s->db, scheduler_load_snapshots_sql, 1, param, &snaps);
        if (r < 0)
                goto out;
        r = store_exec(s->db,
                       "SELECT user_id, device_id,"
                       "       round(extract(epoch FROM reported_at) * 1000), lat, lon"
                       " FROM device_locations WHERE user_id = ANY ($1::text[])"
                       " ORDER BY user_id COLLATE \"C\", device_id",
                       1, param, &devices);
        if (r < 0)
                goto out;
        snap_ids = calloc(store_rows(snaps) + 1, sizeof(*snap_ids));
        dev_ids = calloc(store_rows(devices) + 1, sizeof(*dev_ids));
        if (!snap_ids || !dev_ids)
                r = -ENOMEM;

        for (size_t i = 0; i < n_missing && r == 0; i++) {
                const char *id = missing[i].id;
                size_t n_snaps, n_devs;
                struct tracked_user *u;

                if (i > 0 && !strcmp(id, missing[i - 1].id))
                        continue;
                n_snaps = rows_of(snaps, &snap_row, id);
                n_devs = rows_of(devices, &dev_row, id);
                for (size_t k = 0; k < n_snaps; k++)
                        snap_ids[k] = store_text(snaps, snap_row + k, 1);
                for (size_t k = 0; k < n_devs; k++)
                        dev_ids[k] = store_text(devices, dev_row + k, 1);
                u = user_table_add(s->users, id, missing[i].partition, snap_ids, n_snaps, dev_ids,
                                   n_devs);
                if (!u) {
                        r = -ENOMEM;
                        break;
                }
                for (size_t k = 0; k < n_snaps; k++)
                        scheduler_fill_snapshot(s->world, &user_snapshots(u)[k], snaps, snap_row + k);
                for (size_t k = 0; k < n_devs; k++) {
                        struct engine_device *fix = &user_devices(u)[k].fix;
                        fix->ts_ms = store_int(devices, dev_row + k, 2);
                        fix->lat = (float)store_double(devices, dev_row + k, 3);
                        fix->lon = (float)store_double(devices, dev_row + k, 4);
                }
        }
out:
        store_result_free(snaps);
        store_result_free(devices);
        store_array_fini(&ids);
        free(missing);
        free(snap_ids);
        free(dev_ids);
        return r;
}

/*
 * Users whose snapshots changed under us since the last look (a transfer
 * ran or ended, an operator cancelled one, a snapshot was added or edited,
 * a new version was registered) are forgotten, to be loaded afresh with
 * their next report. A row carries its transaction's start time, which can
 * be before our last look though it committed after it: the look reaches
 * back CHANGES_OVERLAP further (forgetting a user twice costs a reload).
 */
#define CHANGES_OVERLAP "interval '30 seconds'"

static void forget_changed_users(struct scheduler *s) {
        struct store_result *res = NULL;
        const char *since[1] = { s->changes_seen_at[0] ? s->changes_seen_at : NULL };
        size_t forgotten = 0;

        if (store_exec(s->db,
                       "WITH since AS (SELECT $1::timestamptz - " CHANGES_OVERLAP " AS t)"
                       " SELECT now()::text, array_agg(DISTINCT user_id)::text FROM ("
                       " SELECT sn.user_id FROM since, transfers t JOIN snapshots sn ON sn.id = t.snapshot_id"
                       "  WHERE t.updated_at >= since.t AND t.state NOT IN ('queued')"
                       " UNION ALL"
                       " SELECT user_id FROM since, snapshots"
                       "  WHERE created_at >= since.t OR updated_at >= since.t"
                       " UNION ALL"
                       " SELECT sn.user_id FROM since, placements p JOIN snapshots sn ON sn.id = p.snapshot_id"
                       "  WHERE p.created_at >= since.t) changed",
                       1, since, &res) < 0)
                return;
        if (store_text(res, 0, 1)) {
                char **ids;
                size_t n;
                if (store_array_parse(store_text(res, 0, 1), &ids, &n) == 0) {
                        for (size_t i = 0; i < n; i++)
                                forgotten += ids[i] && user_table_remove(s->users, ids[i]);
                        store_array_items_free(ids, n);
                }
        }
        snprintf(s->changes_seen_at, sizeof(s->changes_seen_at), "%s", store_text(res, 0, 0));
        if (forgotten)
                log_debug("scheduler", "%zu users changed in PostgreSQL; reloading them", forgotten);
        store_result_free(res);
}

/* ---- deciding ---- */

static int note_decision(struct scheduler *s, struct tracked_user *u, uint16_t snap, size_t report,
                         const struct engine_decision *d) {
        if (s->n_decisions == s->cap_decisions) {
                size_t cap = s->cap_decisions ? s->cap_decisions * 2 : 64;
                struct decision_record *grown = realloc(s->decisions, cap * sizeof(*grown));
                if (!grown)
                        return -ENOMEM;
                s->decisions = grown;
                s->cap_decisions = cap;
        }
        s->decisions[s->n_decisions++] = (struct decision_record){ u, snap, report, *d };
        return 0;
}

static int mark_dirty(struct scheduler *s, struct tracked_user *u, uint16_t snap) {
        if (s->n_dirty == s->cap_dirty) {
                size_t cap = s->cap_dirty ? s->cap_dirty * 2 : 64;
                struct dirty_snapshot *grown = realloc(s->dirty, cap * sizeof(*grown));
                if (!grown)
                        return -ENOMEM;
                s->dirty = grown;
                s->cap_dirty = cap;
        }
        s->dirty[s->n_dirty++] = (struct dirty_snapshot){ u, snap };
        return 0;
}

/* Runs the policy over one report; effects are gathered for the commit. */
static int decide_report(struct scheduler *s, size_t i) {
        struct batch_report *b = &s->reports[i];
        const struct report *rep = &b->report;
        struct tracked_user *u = user_table_find(s->users, rep->user_id);
        struct tracked_snapshot *snaps;
        enum engine_reason verdict;
        int device, r = 0;

        if (!u)
                return -ENOENT; /* load_users put every user of the batch in memory */
        b->user = u;
        device = user_device(u, rep->device_id);
        if (device < 0)
                return device;
        verdict = engine_check_report(&s->policy, &user_devices(u)[device].fix, rep->lat,
                                      rep->lon, rep->accuracy_m, rep->ts_ms, rep->received_ms);
        if (verdict != ENGINE_OK) {
                s->drops[verdict]++;
                return 0;
        }
        s->devices[s->n_devices] = (struct device_update){
                u, user_devices(u)[device].id, (uint16_t)device, (uint32_t)s->n_devices, rep->lat,
                rep->lon, rep->accuracy_m, rep->ts_ms, rep->received_ms };
        s->n_devices++;

        snaps = user_snapshots(u);
        for (uint16_t k = 0; k < u->n_snapshots && r == 0; k++) {
                struct tracked_snapshot *snap = &snaps[k];
                struct engine_snapshot before = snap->policy;
                struct engine_decision d;
                double started;

                started = metrics_now();
                r = engine_decide(&s->policy, world_context(s->world), &snap->policy, rep->lat,
                                  rep->lon, rep->ts_ms, &d);
                metrics_histogram_observe(s->m_decide_seconds, NULL, metrics_now() - started);
                if (r < 0)
                        break;
                s->tally_decisions[d.outcome == ENGINE_MOVE][d.reason]++;
                s->tally_superseded += d.superseded != ENGINE_NO_SITE;
                if (d.outcome == ENGINE_MOVE || d.reason != snap->last_reason ||
                    d.outcome != snap->last_outcome) {
                        r = note_decision(s, u, k, i, &d);
                        snap->last_reason = (uint8_t)d.reason;
                        snap->last_outcome = (uint8_t)d.outcome;
                        if (r == 0)
                                r = mark_dirty(s, u, k);
                } else if (memcmp(&before, &snap->policy, sizeof(before)) != 0) {
                        r = mark_dirty(s, u, k);
                }
        }
        return r;
}

/* Orders by device id, the latest fix first within each (then the last read). */
static int cmp_device_updates(const void *pa, const void *pb) {
        const struct device_update *a = pa, *b = pb;
        int c = strcmp(a->device_id, b->device_id);
        if (c)
                return c;
        if (a->ts_ms != b->ts_ms)
                return a->ts_ms > b->ts_ms ? -1 : 1;
        return a->seq > b->seq ? -1 : a->seq < b->seq;
}

/* Orders by (user, snapshot). */
static int cmp_dirty(const void *pa, const void *pb) {
        const struct dirty_snapshot *a = pa, *b = pb;
        if (a->user != b->user)
                return a->user < b->user ? -1 : 1;
        return (a->snapshot > b->snapshot) - (a->snapshot < b->snapshot);
}

/* Keeps one entry per device id (its last fix) and one per snapshot. */
static void batch_dedupe(struct scheduler *s) {
        size_t n = 0;

        if (s->n_devices > 1)
                qsort(s->devices, s->n_devices, sizeof(*s->devices), cmp_device_updates);
        for (size_t i = 0; i < s->n_devices; i++)
                if (n == 0 || strcmp(s->devices[i].device_id, s->devices[n - 1].device_id) != 0)
                        s->devices[n++] = s->devices[i];
        s->n_devices = n;
        n = 0;
        /* qsort wants an array even for no elements, and dirty has none until a
         * first snapshot changed. */
        if (s->n_dirty > 1)
                qsort(s->dirty, s->n_dirty, sizeof(*s->dirty), cmp_dirty);
        for (size_t i = 0; i < s->n_dirty; i++)
                if (n == 0 || cmp_dirty(&s->dirty[i], &s->dirty[n - 1]) != 0)
                        s->dirty[n++] = s->dirty[i];
        s->n_dirty = n;
}

/* ---- committing ---- */

static int persist_devices(struct scheduler *s) {
        struct store_columns c;
        struct store_array *dev = &c.col[0], *user = &c.col[1], *lat = &c.col[2],
                           *lon = &c.col[3], *acc = &c.col[4], *ts = &c.col[5], *rcv = &c.col[6];

        if (s->n_devices == 0)
                return 0;
        store_columns_init(&c, 7);
        for (size_t i = 0; i < s->n_devices; i++) {
                struct device_update *d = &s->devices[i];
                struct tracked_device *td = &user_devices(d->user)[d->device];
                store_array_add_text(dev, td->id);
                store_array_add_text(user, d->user->id);
                store_array_add_double(lat, d->lat);
                store_array_add_double(lon, d->lon);
                store_array_add_double(acc, d->accuracy_m);
                store_array_add_int(ts, d->ts_ms);
                store_array_add_int(rcv, d->received_ms);
        }
        return store_exec_columns(
                s->db,
                "INSERT INTO device_locations (device_id, user_id, lat, lon, accuracy_m,"
                "                              reported_at, received_at)"
                " SELECT d, u, la, lo, a, to_timestamp(t / 1000.0), to_timestamp(rc / 1000.0)"
                " FROM unnest($1::text[], $2::text[], $3::float8[], $4::float8[],"
                "             $5::float8[], $6::int8[], $7::int8[]) AS x(d, u, la, lo, a, t, rc)"
                " ON CONFLICT (device_id) DO UPDATE SET user_id = excluded.user_id,"
                "  lat = excluded.lat, lon = excluded.lon, accuracy_m = excluded.accuracy_m,"
                "  reported_at = excluded.reported_at, received_at = excluded.received_at,"
                "  updated_at = now()"
                " WHERE excluded.reported_at >= device_locations.reported_at",
                &c, 0, NULL, NULL);
}

static int persist_policy_state(struct scheduler *s) {
        struct store_columns c;
        struct store_array *id = &c.col[0], *cand = &c.col[1], *since = &c.col[2],
                           *reps = &c.col[3], *moved = &c.col[4], *wstart = &c.col[5],
                           *wmoves = &c.col[6], *outcome = &c.col[7], *reason = &c.col[8];

        if (s->n_dirty == 0)
                return 0;
        store_columns_init(&c, 9);
        for (size_t i = 0; i < s->n_dirty; i++) {
                struct tracked_snapshot *snap = &user_snapshots(s->dirty[i].user)[s->dirty[i].snapshot];
                const struct engine_snapshot *p = &snap->policy;
                store_array_add_text(id, snap->id);
                store_array_add_text(cand, world_site_id(s->world, p->candidate));
                store_array_add_double(since, p->candidate == ENGINE_NO_SITE ? NAN : (double)p->candidate_since_ms);
                store_array_add_int(reps, p->candidate_reports);
                store_array_add_double(moved, p->last_move_ms ? (double)p->last_move_ms : NAN);
                store_array_add_double(wstart, p->window_start_ms ? (double)p->window_start_ms : NAN);
                store_array_add_int(wmoves, p->window_moves);
                store_array_add_text(outcome, snap->last_reason == ENGINE_OK ? NULL
                                              : snap->last_outcome == ENGINE_MOVE ? "move"
                                                                                   : "stay");
                store_array_add_text(reason, snap->last_reason == ENGINE_OK
                                                     ? NULL
                                                     : engine_reason_name(snap->last_reason));
        }
        return store_exec_columns(
                s->db,
                "INSERT INTO snapshot_policy_state (snapshot_id, candidate_dc,"
                "  candidate_since, candidate_reports, last_move_at, window_start,"
                "  window_moves, last_outcome, last_reason, last_decided_at)"
                " SELECT i, c, to_timestamp(cs / 1000.0), cr, to_timestamp(lm / 1000.0),"
                "        to_timestamp(ws / 1000.0), wm, lo, lr, now()"
                " FROM unnest($1::text[], $2::text[], $3::float8[], $4::int[], $5::float8[],"
                "             $6::float8[], $7::int[], $8::text[], $9::text[])"
                "      AS x(i, c, cs, cr, lm, ws, wm, lo, lr)"
                " ON CONFLICT (snapshot_id) DO UPDATE SET"
                "  candidate_dc = excluded.candidate_dc,"
                "  candidate_since = excluded.candidate_since,"
                "  candidate_reports = excluded.candidate_reports,"
                "  last_move_at = excluded.last_move_at, window_start = excluded.window_start,"
                "  window_moves = excluded.window_moves, last_outcome = excluded.last_outcome,"
                "  last_reason = excluded.last_reason, last_decided_at = now(),"
                "  updated_at = now()",
                &c, 0, NULL, NULL);
}

/* The details column: the numbers behind a decision. */
static void decision_details(const struct scheduler *s, const struct engine_decision *d,
                             char *buf, size_t size) {
        const char *nearest = world_site_id(s->world, d->nearest);
        snprintf(buf, size,
                 "{\"nearest_dc\": %s%s%s, \"dwell_ms\": %lld, \"dwell_reports\": %d,"
                 " \"bytes\": %llu, \"template_present\": %s, \"margin_m\": %.0f,"
                 " \"margin_ratio\": %g}",
                 nearest ? "\"" : "", nearest ? nearest : "null", nearest ? "\"" : "",
                 (long long)d->dwell_ms, d->dwell_reports, (unsigned long long)d->bytes,
                 d->template_present ? "true" : "false", s->policy.margin_m,
                 s->policy.margin_ratio);
}

/*
 * Whether a stay is also an audit event: a hash of the report that caused it
 * against --audit-stay-sample, so a replayed batch samples the same stays.
 */
static bool stay_audited(const struct scheduler *s, const char *snapshot_id,
                         const struct batch_report *b) {
        char key[160];

        if (s->cfg->audit_stay_sample <= 0)
                return false;
        snprintf(key, sizeof(key), "%s/%d/%lld", snapshot_id, b->partition, (long long)b->offset);
        return hash_unit(hash_fnv1a(key)) < s->cfg->audit_stay_sample;
}

/* Stays whose reason changed, and the sampled ones' audit events, in one statement. */
static const char stays_sql[] =
        "WITH d AS ("
        "  INSERT INTO decisions (snapshot_id, user_id, device_id, outcome, reason,"
        "    from_dc, to_dc, from_distance_m, to_distance_m, report_lat, report_lon,"
        "    report_ts, details)"
        "  SELECT sn, u, d, 'stay', re, f, t, fm, tm, la, lo, to_timestamp(ts / 1000.0),"
        "         CASE WHEN au THEN de || jsonb_build_object('audited', true) ELSE de END"
        "  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],"
        "              $6::text[], $7::float8[], $8::float8[], $9::float8[],"
        "              $10::float8[], $11::int8[], $12::jsonb[], $13::boolean[])"
        "       AS x(sn, u, d, re, f, t, fm, tm, la, lo, ts, de, au)"
        "  RETURNING *)"
        " INSERT INTO outbox (topic, key, payload)"
        " SELECT $14, d.snapshot_id, homing_cloudevent("
        "   'decision-' || d.id, '/homing/scheduler', 'io.homing.placement.stayed',"
        "   d.created_at, d.snapshot_id,"
        "   jsonb_build_object('snapshot_id', d.snapshot_id, 'user_id', d.user_id,"
        "     'device_id', d.device_id, 'reason', d.reason, 'current_dc', d.from_dc,"
        "     'target_dc', d.to_dc, 'current_distance_m', d.from_distance_m,"
        "     'target_distance_m', d.to_distance_m, 'details', d.details - 'audited'))"
        " FROM d WHERE d.details ? 'audited'";

static int persist_stays(struct scheduler *s) {
        struct store_columns c;
        struct store_array *snap = &c.col[0], *user = &c.col[1], *dev = &c.col[2],
                           *reason = &c.col[3], *from = &c.col[4], *to = &c.col[5],
                           *from_m = &c.col[6], *to_m = &c.col[7], *lat = &c.col[8],
                           *lon = &c.col[9], *ts = &c.col[10], *details = &c.col[11],
                           *audited = &c.col[12];
        const char *topic[1] = { s->cfg->topic_audit };
        size_t n = 0;

        store_columns_init(&c, 13);
        for (size_t i = 0; i < s->n_decisions; i++) {
                const struct decision_record *rec = &s->decisions[i];
                const struct tracked_snapshot *sn = &user_snapshots(rec->user)[rec->snapshot];
                const struct report *rep = &s->reports[rec->report].report;
                char json[512];
                if (rec->decision.outcome != ENGINE_STAY)
                        continue;
                decision_details(s, &rec->decision, json, sizeof(json));
                store_array_add_text(snap, sn->id);
                store_array_add_text(user, rec->user->id);
                store_array_add_text(dev, rep->device_id);
                store_array_add_text(reason, engine_reason_name(rec->decision.reason));
                store_array_add_text(from, world_site_id(s->world, sn->policy.current));
                store_array_add_text(to, world_site_id(s->world, rec->decision.target));
                store_array_add_double(from_m, rec->decision.current_m);
                store_array_add_double(to_m, rec->decision.target_m);
                store_array_add_double(lat, rep->lat);
                store_array_add_double(lon, rep->lon);
                store_array_add_int(ts, rep->ts_ms);
                store_array_add_text(details, json);
                store_array_add_text(audited, stay_audited(s, sn->id, &s->reports[rec->report])
                                                      ? "t" : "f");
                n++;
        }
        if (n == 0) {
                store_columns_fini(&c);
                return 0;
        }
        return store_exec_columns(s->db, stays_sql, &c, 1, topic, NULL);
}

/* The transfer a move replaces is cancelled, with its audit event. */
static const char supersede_sql[] =
        "WITH ended AS (SELECT homing_transfer_ended($1::bigint, 'cancelled',"
        "                      'superseded: the user settled nearer another datacenter') AS yes)"
        " INSERT INTO outbox (topic, key, payload)"
        " SELECT $2, t.snapshot_id, homing_cloudevent("
        "   'transfer-' || t.id || '-cancelled', '/homing/scheduler',"
        "   'io.homing.transfer.cancelled', now(), t.snapshot_id,"
        "   jsonb_build_object('transfer_id', t.id, 'snapshot_id', t.snapshot_id,"
        "     'from_dc', t.from_dc, 'to_dc', t.to_dc, 'reason', 'superseded'))"
        " FROM ended, transfers t WHERE ended.yes AND t.id = $1::bigint";

/* The effects of one move, in one statement: the transfer, its reservation,
 * why, and the outbox rows (the job, and two audit events). */
static const char move_sql[] =
        "WITH t AS ("
        "  INSERT INTO transfers (snapshot_id, from_dc, to_dc, template_id, template_present,"
        "                         priority, reason, idempotency_key, bytes_total)"
        "  SELECT s.id, $2, $3, s.template_id, $4::boolean, s.priority, 'closer', $5, $6::bigint"
        "  FROM snapshots s WHERE s.id = $1"
        "  ON CONFLICT (idempotency_key) DO NOTHING"
        "  RETURNING *),"
        " reserve AS ("
        "  UPDATE datacenters SET reserved_bytes = reserved_bytes + t.bytes_total,"
        "                         updated_at = now()"
        "  FROM t WHERE datacenters.id = t.to_dc),"
        " d AS ("
        "  INSERT INTO decisions (snapshot_id, user_id, device_id, outcome, reason, from_dc,"
        "                         to_dc, from_distance_m, to_distance_m, report_lat, report_lon,"
        "                         report_ts, transfer_id, details)"
        "  SELECT t.snapshot_id, $7, $8, 'move', 'closer', $2, $3, $9::float8, $10::float8,"
        "         $11::float8, $12::float8, to_timestamp($13::float8 / 1000), t.id, $16::jsonb"
        "  FROM t),"
        " job AS ("
        "  INSERT INTO outbox (topic, key, payload)"
        "  SELECT $14, t.snapshot_id, jsonb_build_object("
        "    'transfer_id', t.id, 'snapshot_id', t.snapshot_id, 'from_dc', t.from_dc,"
        "    'to_dc', t.to_dc, 'template_id', t.template_id,"
        "    'template_present', t.template_present, 'priority', t.priority,"
        "    'reason', t.reason, 'bytes_total', t.bytes_total,"
        "    'idempotency_key', t.idempotency_key) FROM t),"
        " audit AS ("
        "  INSERT INTO outbox (topic, key, payload)"
        "  SELECT $15, t.snapshot_id, homing_cloudevent("
        "    'transfer-' || t.id || '-' || e.kind, '/homing/scheduler', e.type,"
        "    t.created_at, t.snapshot_id,"
        "    jsonb_build_object('transfer_id', t.id, 'snapshot_id', t.snapshot_id,"
        "      'user_id', $7, 'device_id', $8, 'from_dc', t.from_dc, 'to_dc', t.to_dc,"
        "      'reason', t.reason, 'from_distance_m', $9::float8, 'to_distance_m', $10::float8,"
        "      'template_present', t.template_present, 'bytes_total', t.bytes_total,"
        "      'details', $16::jsonb))"
        "  FROM t, (VALUES ('decided', 'io.homing.placement.decided'),"
        "                  ('queued', 'io.homing.transfer.queued')) AS e(kind, type))"
        "SELECT id FROM t";

static int persist_move(struct scheduler *s, struct decision_record *rec) {
        struct tracked_snapshot *snap = &user_snapshots(rec->user)[rec->snapshot];
        const struct batch_report *b = &s->reports[rec->report];
        const struct engine_decision *d = &rec->decision;
        char key[200], bytes[32], cur_m[32], target_m[32], lat[32], lon[32], ts[32], old[32];
        char details[512];
        const char *params[16] = { snap->id,
                                   world_site_id(s->world, snap->policy.current),
                                   world_site_id(s->world, d->target),
                                   d->template_present ? "true" : "false",
                                   key, bytes, rec->user->id, b->report.device_id,
                                   isfinite(d->current_m) ? cur_m : NULL, target_m, lat, lon, ts,
                                   s->cfg->topic_transfers, s->cfg->topic_audit, details };
        struct store_result *res = NULL;
        int r;

        if (snap->pending_transfer) {
                const char *cancel[2] = { old, s->cfg->topic_audit };
                snprintf(old, sizeof(old), "%lld", (long long)snap->pending_transfer);
                r = store_exec(s->db, supersede_sql, 2, cancel, NULL);
                if (r < 0)
                        return r;
        }
        /* The report that caused it names the transfer: replaying it is a no-op. */
        snprintf(key, sizeof(key), "%s/%s/%d/%lld", snap->id, s->cfg->topic_locations,
                 b->partition, (long long)b->offset);
        snprintf(bytes, sizeof(bytes), "%llu", (unsigned long long)d->bytes);
        snprintf(cur_m, sizeof(cur_m), "%.3f", d->current_m);
        snprintf(target_m, sizeof(target_m), "%.3f", d->target_m);
        snprintf(lat, sizeof(lat), "%.9f", b->report.lat);
        snprintf(lon, sizeof(lon), "%.9f", b->report.lon);
        snprintf(ts, sizeof(ts), "%lld", (long long)b->report.ts_ms);
        decision_details(s, d, details, sizeof(details));

        r = store_exec(s->db, move_sql, 16, params, &res);
        if (r == 0 && store_rows(res) == 1) {
                const char *ids[] = { "snapshot_id", snap->id, "user_id", rec->user->id,
                                      "transfer_id", store_text(res, 0, 0), NULL };
                snap->pending_transfer = store_int(res, 0, 0);
                log_line(LOG_INFO, "scheduler", ids, "move %s -> %s: %.0f m -> %.0f m%s",
                         params[1] ? params[1] : "(nowhere)", params[2], d->current_m,
                         d->target_m, d->superseded != ENGINE_NO_SITE ? " (superseding)" : "");
                s->moves_total++;
        }
        store_result_free(res);
        return r;
}

static int persist_drops(struct scheduler *s) {
        struct store_columns c;
        struct store_array *reasons = &c.col[0], *counts = &c.col[1];

        store_columns_init(&c, 2);
        for (int i = 0; i < ENGINE_REASON_COUNT; i++) {
                if (s->drops[i]) {
                        store_array_add_text(reasons, engine_reason_name((enum engine_reason)i));
                        store_array_add_int(counts, (int64_t)s->drops[i]);
                }
        }
        if (reasons->n == 0) {
                store_columns_fini(&c);
                return 0;
        }
        return store_exec_columns(s->db,
                                  "INSERT INTO dropped_reports (reason, count)"
                                  " SELECT * FROM unnest($1::text[], $2::int8[])"
                                  " ON CONFLICT (reason) DO UPDATE"
                                  " SET count = dropped_reports.count + excluded.count",
                                  &c, 0, NULL, NULL);
}

static void batch_clear(struct scheduler *s) {
        for (size_t i = 0; i < s->n_messages; i++)
                s->messages[i] = bus_message_free(s->messages[i]);
        s->n_messages = s->n_devices = s->n_decisions = s->n_dirty = 0;
        memset(s->drops, 0, sizeof(s->drops));
        memset(s->tally_decisions, 0, sizeof(s->tally_decisions));
        s->tally_superseded = s->tally_invalid = 0;
}

/* A committed batch: its tallies become what /metrics says. */
static void count_batch(struct scheduler *s, size_t processed) {
        for (int outcome = 0; outcome < 2; outcome++)
                for (int reason = ENGINE_CLOSER; reason <= ENGINE_DOWN; reason++)
                        if (s->tally_decisions[outcome][reason])
                                metrics_counter_add(s->m_decisions,
                                                    (size_t[]){ (size_t)outcome,
                                                                (size_t)(reason - ENGINE_CLOSER) },
                                                    s->tally_decisions[outcome][reason]);
        for (int reason = ENGINE_LOW_ACCURACY; reason <= ENGINE_FUTURE; reason++) {
                if (s->drops[reason])
                        metrics_counter_add(s->m_dropped,
                                            (size_t[]){ (size_t)(reason - ENGINE_LOW_ACCURACY) },
                                            s->drops[reason]);
                s->drops_total += s->drops[reason];
        }
        metrics_counter_add(s->m_reports, NULL, processed);
        metrics_counter_add(s->m_invalid, NULL, s->tally_invalid);
        metrics_counter_add(s->m_superseded, NULL, s->tally_superseded);
        metrics_histogram_observe(s->m_batch_reports, NULL, (double)s->n_messages);
        s->invalid_total += s->tally_invalid;
}

/* A dead letter and its audit event, with the offset past it. */
static const char quarantine_sql[] =
        "WITH dl AS ("
        "  INSERT INTO dead_letters (group_id, topic, partition, kafka_offset, payload, error)"
        "  VALUES ($1, $2, $3::int, $4::bigint, decode($5, 'hex'), $6)"
        "  ON CONFLICT DO NOTHING RETURNING *)"
        " INSERT INTO outbox (topic, key, payload)"
        " SELECT $7, dl.topic || '/' || dl.partition || '/' || dl.kafka_offset, homing_cloudevent("
        "   'dead-letter-' || dl.id, '/homing/scheduler', 'io.homing.report.quarantined',"
        "   dl.created_at, dl.topic || '/' || dl.partition || '/' || dl.kafka_offset,"
        "   jsonb_build_object('dead_letter_id', dl.id, 'topic', dl.topic,"
        "     'partition', dl.partition, 'offset', dl.kafka_offset, 'user_id', $8::text,"
        "     'device_id', $9::text, 'error', dl.error))"
        " FROM dl";

/*
 * A report whose effects fail on their own, every time (the batch was cut
 * down to it), is set aside in dead_letters with its offset passed, so that
 * its partition goes on. Returns 0, or <0 when even that failed.
 */
static int quarantine(struct scheduler *s, size_t i, const char *error) {
        const struct batch_report *b = &s->reports[i];
        const void *value;
        size_t len;
        char part[16], off[32], *hex = NULL;
        int r;

        value = bus_message_value(s->messages[i], &len);
        hex = malloc(2 * len + 1);
        if (!hex)
                return -ENOMEM;
        for (size_t k = 0; k < len; k++)
                snprintf(hex + 2 * k, 3, "%02x", ((const unsigned char *)value)[k]);
        hex[2 * len] = '\0';
        snprintf(part, sizeof(part), "%d", b->partition);
        snprintf(off, sizeof(off), "%lld", (long long)b->offset);
        {
                const char *params[9] = { s->cfg->consumer_group, s->cfg->topic_locations, part,
                                          off, hex, error, s->cfg->topic_audit,
                                          b->report.user_id, b->report.device_id };
                r = store_begin(s->db);
                if (r == 0)
                        r = store_exec(s->db, quarantine_sql, 9, params, NULL);
        }
        if (r == 0)
                r = advance_offset(s, b->partition, b->offset, b->offset + 1);
        if (r == 0)
                r = store_commit(s->db);
        free(hex);
        if (r < 0) {
                store_rollback(s->db);
                return r;
        }
        {
                const char *ids[] = { "user_id", b->report.user_id, "device_id",
                                      b->report.device_id, NULL };
                log_line(LOG_ERROR, "scheduler", ids,
                         "partition %d offset %lld: quarantined in dead_letters (%s)", b->partition,
                         (long long)b->offset, error);
        }
        s->parts[b->partition].stored = true;
        s->parts[b->partition].next = b->offset + 1;
        user_table_remove(s->users, b->report.user_id); /* decided in memory, never written */
        metrics_counter_inc(s->m_quarantined, NULL);
        s->quarantined_total++;
        return 0;
}

static int batch_commit(struct scheduler *s) {
        int64_t first[MAX_PARTITIONS], last[MAX_PARTITIONS];
        bool touched[MAX_PARTITIONS] = { false };
        size_t processed = 0, accepted = 0, only = 0;
        int64_t t[5];
        int r;

        if (s->n_messages == 0)
                return 0;

        /*
         * Decode what follows PostgreSQL's offsets exactly: older messages
         * (after a re-seek) are done already, a held partition's are not
         * ours to read yet, and a gap means something was skipped.
         */
        for (size_t i = 0; i < s->n_messages; i++) {
                struct batch_report *b = &s->reports[i];
                int32_t p = bus_message_partition(s->messages[i]);
                int64_t off = bus_message_offset(s->messages[i]);
                struct partition_state *part;
                const void *value;
                size_t len;

                memset(b, 0, sizeof(*b));
                b->partition = p;
                b->offset = off;
                if (p < 0 || p >= MAX_PARTITIONS)
                        continue;
                part = &s->parts[p];
                if (!part->assigned || part->held || (part->stored && off < part->next))
                        continue;
                if (part->expect >= 0 && off != part->expect) {
                        log_warn("scheduler", "partition %d: offset %lld came where %lld was due; "
                                              "rewinding", p, (long long)off, (long long)part->expect);
                        hold_partition(s, p);
                        continue;
                }
                part->expect = off + 1;
                if (!touched[p])
                        first[p] = off;
                touched[p] = true;
                last[p] = off;
                accepted++;
                only = i;
                value = bus_message_value(s->messages[i], &len);
                if (report_decode(value, len, &b->report) < 0) {
                        /* The API validated it; a bad one here came from elsewhere. */
                        log_warn("scheduler", "partition %d offset %lld: not a location report; skipped",
                                 p, (long long)off);
                        b->report.user_id[0] = '\0';
                        s->tally_invalid++;
                }
        }
        if (accepted == 0) {
                batch_clear(s);
                return 0;
        }

        t[0] = clock_mono_us();
        r = store_begin(s->db);
        if (r == 0)
                r = load_users(s);
        t[1] = clock_mono_us();
        for (size_t i = 0; i < s->n_messages && r == 0; i++) {
                if (!s->reports[i].report.user_id[0])
                        continue;
                r = decide_report(s, i);
                processed++;
        }
        t[2] = clock_mono_us();
        if (r == 0) {
                batch_dedupe(s);
                r = persist_devices(s);
        }
        for (size_t i = 0; i < s->n_decisions && r == 0; i++)
                if (s->decisions[i].decision.outcome == ENGINE_MOVE)
                        r = persist_move(s, &s->decisions[i]);
        if (r == 0)
                r = persist_stays(s);
        if (r == 0)
                r = persist_policy_state(s);
        if (r == 0)
                r = persist_drops(s);
        for (int32_t p = 0; p < MAX_PARTITIONS && r == 0; p++)
                if (touched[p])
                        r = advance_offset(s, p, first[p], last[p] + 1);
        t[3] = clock_mono_us();
        if (r == 0)
                r = store_commit(s->db);
        t[4] = clock_mono_us();
        log_debug("scheduler", "batch of %zu: load %lld us, decide %lld us, write %lld us, commit %lld us",
                  s->n_messages, (long long)(t[1] - t[0]), (long long)(t[2] - t[1]),
                  (long long)(t[3] - t[2]), (long long)(t[4] - t[3]));

        metrics_histogram_observe(s->m_batch_seconds, (size_t[]){ 0 } /* scheduler */,
                                  (double)(clock_mono_us() - t[0]) / 1e6);
        if (r == 0) {
                count_batch(s, processed);
                s->reports_total += processed;
                for (int32_t p = 0; p < MAX_PARTITIONS; p++) {
                        if (touched[p]) {
                                s->parts[p].stored = true;
                                s->parts[p].next = last[p] + 1;
                        }
                }
                batch_clear(s);
                return 0;
        }

        store_rollback(s->db);
        metrics_counter_inc(s->m_rollbacks, (size_t[]){ r == -ESTALE ? 0 : 1 });
        if (r == -EIO) {
                /* The statement's own fault: find the report that causes it. */
                const struct batch_report *b = &s->reports[only];
                char error[400];
                snprintf(error, sizeof(error), "%s", store_error(s->db));
                if (accepted == 1 && s->parts[b->partition].isolate_through >= b->offset &&
                    quarantine(s, only, error) == 0) {
                        batch_clear(s);
                        return 0;
                }
                for (int32_t q = 0; q < MAX_PARTITIONS; q++)
                        if (touched[q] && last[q] > s->parts[q].isolate_through)
                                s->parts[q].isolate_through = last[q];
                log_error("scheduler", "batch of %zu reports rolled back (%s); "
                                       "retrying them one at a time", s->n_messages, error);
        } else if (r == -ESTALE) {
                log_warn("scheduler", "another scheduler advanced a partition first; "
                                      "re-reading offsets");
        } else {
                log_error("scheduler", "batch of %zu reports rolled back (%s); will retry",
                          s->n_messages, strerror(-r));
        }
        /* Memory ran ahead of what committed: forget it all, then re-read. */
        batch_clear(s);
        hold_partitions(s, r == -ESTALE || r == -EIO ? 0 : 200);
        return r;
}

int scheduler_run(const struct config *cfg, struct metrics *metrics, atomic_bool *stop) {
        struct scheduler s = { .cfg = cfg };
        struct bus_consumer_ops ops = { on_assign, on_revoke };
        char errbuf[512];
        int r;

        scheduler_policy_from_config(&s.policy, cfg);
        pthread_mutex_init(&s.lag_lock, NULL);
        for (int32_t p = 0; p < MAX_PARTITIONS; p++)
                s.lag[p] = -1;
        r = register_metrics(&s, metrics);
        if (r < 0)
                goto out;
        s.messages = calloc((size_t)cfg->batch_max, sizeof(*s.messages));
        s.reports = calloc((size_t)cfg->batch_max, sizeof(*s.reports));
        s.devices = calloc((size_t)cfg->batch_max, sizeof(*s.devices));
        if (!s.messages || !s.reports || !s.devices || world_new(&s.world) < 0 ||
            user_table_new(&s.users) < 0) {
                r = -ENOMEM;
                goto out;
        }
        while ((r = store_connect(cfg->pg_dsn, &s.db)) < 0 && !atomic_load(stop))
                sleep(1);
        if (r < 0)
                goto out;
        while ((r = world_load(s.world, s.db)) < 0 && !atomic_load(stop))
                sleep(1);
        if (r < 0)
                goto out;
        s.world_loaded_at = time(NULL);
        forget_changed_users(&s);
        r = bus_consumer_new(cfg->kafka_brokers, cfg->consumer_group, cfg->topic_locations, &ops,
                             &s, &s.consumer, errbuf, sizeof(errbuf));
        if (r < 0) {
                log_error("scheduler", "cannot create the consumer: %s", errbuf);
                goto out;
        }
        log_info("scheduler", "consuming %s as group %s; %zu datacenters",
                 cfg->topic_locations, cfg->consumer_group,
                 geo_index_count(world_context(s.world)->index));

        while (!atomic_load(stop)) {
                int64_t deadline = clock_mono_ms() + cfg->batch_wait_ms;
                size_t batch_max = isolating(&s) ? 1 : (size_t)cfg->batch_max;

                if (any_held(&s) && clock_mono_ms() >= s.next_rewind_ms &&
                    rewind_partitions(&s) < 0)
                        s.next_rewind_ms = clock_mono_ms() + 1000;

                if (time(NULL) - s.world_loaded_at >= cfg->catalog_refresh_s) {
                        /* Between batches: no decision holds a site index meanwhile. */
                        world_load(s.world, s.db);
                        forget_changed_users(&s);
                        s.world_loaded_at = time(NULL);
                }
                while (s.n_messages < batch_max && !atomic_load(stop)) {
                        struct bus_message *m;
                        int64_t left = deadline - clock_mono_ms();
                        r = bus_consumer_poll(s.consumer, s.n_messages ? (left > 0 ? left : 0) : 200, &m);
                        if (r == 1)
                                s.messages[s.n_messages++] = m;
                        else if (s.n_messages ? left <= 0 : true)
                                break;
                }
                batch_commit(&s);
                update_lag(&s);
        }
        r = 0;
        log_info("scheduler", "stopping: %lu reports, %lu moves, %lu dropped, %lu invalid, "
                              "%lu quarantined", s.reports_total, s.moves_total, s.drops_total,
                 s.invalid_total, s.quarantined_total);
out:
        atomic_store(&consumer_assigned, false);
        metrics_fn_detach(s.m_lag); /* `s` is about to go */
        batch_clear(&s);
        s.consumer = bus_consumer_free(s.consumer); /* revokes: on_revoke commits nothing left */
        s.users = user_table_free(s.users);
        s.world = world_free(s.world);
        s.db = store_free(s.db);
        free(s.messages);
        free(s.reports);
        free(s.devices);
        free(s.decisions);
        free(s.dirty);
        pthread_mutex_destroy(&s.lag_lock);
        return r;
}
