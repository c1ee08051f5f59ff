/*
 * What the scheduler's files share; not for use outside scheduler/. The
 * consumer loop (scheduler.c) holds a batch in `struct scheduler`; load.c
 * brings its users into memory, decide.c runs the policy over it,
 * persist.c writes its effects, stats.c says what /metrics shows of it;
 * upkeep.c runs the periodic work beside the loop, in its own thread:
 * failovers followed (failover.c), transfers in flight that the zones no
 * longer allow cancelled (residency.c), warm replicas placed and kept
 * current (replicas.c), copies pre-staged for announced trips
 * (prestage.c), evacuations stepped (evacuate.c).
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "report/report.h"
#include "scheduler/engine.h"
#include "scheduler/scheduler.h"
#include "scheduler/state.h"

struct bus_consumer;
struct bus_message;
struct config;
struct metrics;
struct metrics_counter;
struct metrics_fn;
struct metrics_gauge;
struct metrics_histogram;
struct replica_memory;
struct store;
struct store_result;
struct user_table;
struct world;

#define MAX_PARTITIONS 1024

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
        int8_t decoded; /* 0: not yet; 1: a report; -1: not a location report */
        /* the numbers as the record wrote them (borrowed from its message) */
        struct report_number_text lat_text, lon_text, accuracy_text;
};

/*
 * What a batch sent to PostgreSQL keeps until its answers are read: the
 * partitions and offsets it advances, and its timings.
 */
struct batch_flight {
        bool touched[MAX_PARTITIONS];
        int64_t first[MAX_PARTITIONS], last[MAX_PARTITIONS];
        size_t processed, accepted, only;
        int64_t t[5];
        int64_t poll_us;   /* the loop's polls that made the batch: waiting for Kafka */
        int64_t decode_us; /* its messages not read ahead decoded, all checked */
        int64_t ahead_us;  /* spent reading the next batch ahead meanwhile */
        bool piped;        /* a pipeline was begun: its answers are due */
        int r;             /* the first failure before the answers */
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
        uint32_t seq;    /* order in the batch */
        double lat, lon; /* as reported: the fix in memory is single precision */
        double accuracy_m;
        int64_t ts_ms, received_ms;
        /* the same numbers as the record wrote them: written without printing */
        struct report_number_text lat_text, lon_text, accuracy_text;
};

/* A decision to record: every move, and a stay whose reason changed. */
struct decision_record {
        struct tracked_user *user;
        uint16_t snapshot;
        size_t report; /* index into the batch */
        struct engine_decision decision;
        struct store_result *queued; /* a move's transfer id, once the batch committed */
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
        struct upkeep_thread *upkeep;

        struct bus_message **messages;
        size_t n_messages;
        struct batch_report *reports;
        /* The next batch, read and decoded while this one's pipeline runs. */
        struct bus_message **ahead;
        size_t n_ahead;
        struct batch_report *ahead_reports;
        bool inflight; /* a batch is sent; its answers are not read yet */
        struct batch_flight flight;
        int64_t poll_us; /* for the next batch_send: its polls' time */
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
        struct metrics_counter *m_decisions; /* {outcome, reason} */
        struct metrics_counter *m_dropped;   /* {reason} */
        struct metrics_counter *m_reports, *m_invalid, *m_superseded, *m_quarantined;
        struct metrics_counter *m_rollbacks; /* {cause} */
        struct metrics_histogram *m_batch_seconds, *m_batch_reports, *m_decide_seconds;
        struct metrics_gauge *m_partitions;
        struct metrics_fn *m_lag;
        pthread_mutex_t lag_lock;
        int64_t lag[MAX_PARTITIONS]; /* -1: not ours, or not known */
        unsigned long tally_decisions[2][ENGINE_REASON_COUNT];
        unsigned long tally_superseded, tally_invalid;
};

/* ---- load.c: users into memory ---- */

/* Loads every user of the batch that is not in memory yet. Returns 0 or <0. */
int scheduler_load_users(struct scheduler *s);

/* Forgets the users whose snapshots changed in PostgreSQL since the last look. */
void scheduler_forget_changed_users(struct scheduler *s);

/* ---- upkeep.c: the periodic work, beside the loop ---- */

/*
 * What the periodic work has: its own connection and its own catalog, and
 * the configuration (read only). Nothing of the loop's (users, batch,
 * partitions, consumer) is reachable from it, so it runs in its own thread.
 */
struct upkeep {
        const struct config *cfg;
        struct store *db;
        struct world *world;
        struct replica_memory *replicas; /* replicas.c's, between passes; NULL before the first */
};

struct upkeep_thread;

/* Starts the thread (it connects and loads its catalog itself). Returns 0 or <0. */
int scheduler_upkeep_start(const struct config *cfg, struct upkeep_thread **out);

/* Stops it (after the pass under way) and frees it. NULL is fine. */
struct upkeep_thread *scheduler_upkeep_stop(struct upkeep_thread *t);

/*
 * The PostgreSQL time (µs since the epoch) at which the earliest pass that
 * ended since the last call began, or -1: the loop's look for changed users
 * reaches back to it, as the pass may have run longer than the look's
 * overlap. Hands it over: the next call says only what ended after.
 */
int64_t scheduler_upkeep_take_began(struct upkeep_thread *t);

/* Hands back a time taken and not used (the look failed). */
void scheduler_upkeep_give_back_began(struct upkeep_thread *t, int64_t began_us);

/* ---- residency.c: transfers in flight that the zones no longer allow ---- */

/* Cancels the open transfers whose target the snapshot's zones no longer allow. */
void scheduler_cancel_outside_zones(struct upkeep *u);

/* ---- replicas.c: warm replicas placed and kept current ---- */

/*
 * One pass (when no other scheduler runs one): designates and releases
 * replicas by the protection policies, queues replicate transfers towards
 * the ones missing or behind. Logs and rolls back on failure.
 */
void scheduler_keep_replicas(struct upkeep *u);

/* Frees what the passes kept between them; NULL is fine. Returns NULL. */
struct replica_memory *scheduler_replica_memory_free(struct replica_memory *m);

/* ---- prestage.c: warm copies for announced trips ---- */

/*
 * One pass (when no other scheduler runs one): releases the pre-staged
 * copies of trips over, withdrawn or no longer served, designates those
 * due, queues replicate transfers towards the ones missing or behind.
 * Logs and rolls back on failure.
 */
void scheduler_prestage(struct upkeep *u);

/* One step of every running evacuation (evacuate.c), by one scheduler at a time. */
void scheduler_run_evacuations(struct upkeep *u);

/* Fails over the sites set down outside the API, ends those set back (failover.c). */
void scheduler_follow_failovers(struct upkeep *u);

/* ---- decide.c: the policy over a batch ---- */

/* Runs the policy over report i; its effects are gathered in `s` for the commit. */
int scheduler_decide_report(struct scheduler *s, size_t i);

/* Keeps one device update per device id (its last fix) and one dirty entry per snapshot. */
void scheduler_batch_dedupe(struct scheduler *s);

/* ---- persist.c: a batch's effects in PostgreSQL ---- */

/*
 * Writes what the batch decided, inside the caller's transaction: device
 * fixes, moves (transfers, their reservations, decisions, outbox rows),
 * stays, policy state, dropped-report counts. Returns 0 or what store says.
 * Made to be sent in a pipeline: no statement's answer is read here (the
 * moves' are, by scheduler_persist_done).
 */
int scheduler_persist_batch(struct scheduler *s);

/*
 * After the batch's pipeline ended: when it committed, the transfers its
 * moves queued become the snapshots' pending ones (and are logged); the
 * answers are freed either way.
 */
void scheduler_persist_done(struct scheduler *s, bool committed);

/* Sets report i aside in dead_letters with its audit event (in the caller's transaction). */
int scheduler_persist_dead_letter(struct scheduler *s, size_t i, const char *error);

/* ---- stats.c: what /metrics says ---- */

int scheduler_register_metrics(struct scheduler *s, struct metrics *m);

/* The partitions held and their lag, after each batch. */
void scheduler_update_lag(struct scheduler *s);

/* A committed batch: its tallies become what /metrics says. */
void scheduler_count_batch(struct scheduler *s, size_t processed);

/* ---- load.c, also for the what-if (scheduler_policy_from_config: scheduler.h) ---- */

/*
 * Selects the snapshots of the users in $1 (a text array) with their
 * placement, transfer in flight, policy state and copy at another site,
 * grouped by user; column 0 is the user id, column 1 the snapshot id,
 * and scheduler_fill_snapshot() reads the rest.
 */
extern const char scheduler_load_snapshots_sql[];

void scheduler_fill_snapshot(struct world *w, struct tracked_snapshot *snap,
                             const struct store_result *res, size_t row);
