/*
 * The outbox relay: publishes rows that committed transactions put in the
 * outbox, in id order, and marks sent the ones Kafka stored. At least once:
 * a crash between delivery and the mark sends a row again, with the same
 * event id, so consumers can drop the duplicate.
 *
 * One relay publishes at a time: each batch's transaction first takes a
 * transaction-level advisory lock, so leadership lives exactly as long as
 * the transaction that publishes and marks. A session lock would survive
 * in the relay's mind after a silent reconnect had dropped it on the
 * server, leaving two relays publishing side by side.
 *
 * A row Kafka refuses for its own sake (bus.h: too large, no such topic,
 * not allowed) counts an attempt; after --outbox-max-attempts it is parked
 * (migration 017) so the rows behind it go on. A broker that does not
 * answer in time counts nothing.
 */
#include "scheduler/scheduler.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/config.h"
#include "base/log.h"
#include "bus/bus.h"
#include "metrics/metrics.h"
#include "store/store.h"

#define RELAY_BATCH "500"
#define RELAY_LOCK "727002"

struct relay_metrics {
        struct metrics_counter *published, *failures;
        struct metrics_gauge *leader, *backlog, *oldest, *parked;
        struct metrics_gauge *transfers;                                       /* {state} */
        struct metrics_gauge *queued;                                          /* {priority} */
        struct metrics_gauge *replica_lag, *replica_behind, *replica_breached; /* {priority} */
        struct metrics_gauge *unrecoverable, *failed_over, *lost_versions,
                *lost_bytes;                  /* {priority} */
        struct metrics_histogram *tx_seconds; /* {component} */
};

static int register_metrics(struct metrics *m, struct relay_metrics *rm) {
        static const char *components[] = { "scheduler", "relay", NULL };
        static const char *states[] = { "queued", "running", NULL };
        static const char *priorities[] = { "1", "2", "3", "4", "5", NULL };
        int r;

        if ((r = metrics_counter_register(m, "homing_outbox_published_total",
                                          "Outbox rows Kafka stored (at least once).", NULL,
                                          &rm->published)) < 0 ||
            (r = metrics_counter_register(m, "homing_outbox_publish_failures_total",
                                          "Outbox batches Kafka did not take; sent again.", NULL,
                                          &rm->failures)) < 0 ||
            (r = metrics_gauge_register(m, "homing_relay_leader",
                                        "1 when this relay holds the lock and publishes.", NULL,
                                        &rm->leader)) < 0 ||
            (r = metrics_gauge_register(
                     m, "homing_outbox_backlog_rows",
                     "Outbox rows not yet published, parked ones aside (database-wide).", NULL,
                     &rm->backlog)) < 0 ||
            (r = metrics_gauge_register(m, "homing_outbox_parked_rows",
                                        "Outbox rows Kafka refused too often, set aside "
                                        "(database-wide; alert on > 0).",
                                        NULL, &rm->parked)) < 0 ||
            (r = metrics_gauge_register(m, "homing_outbox_oldest_unsent_age_seconds",
                                        "Age of the oldest unpublished outbox row.", NULL,
                                        &rm->oldest)) < 0 ||
            (r = metrics_gauge_register(
                     m, "homing_transfers_open", "Transfers in flight by state (database-wide).",
                     (const struct metrics_label[]){ { "state", states }, { NULL, NULL } },
                     &rm->transfers)) < 0 ||
            (r = metrics_gauge_register(
                     m, "homing_transfers_queued",
                     "Transfers waiting for an agent, by priority level (1 most urgent; database-wide).",
                     (const struct metrics_label[]){ { "priority", priorities }, { NULL, NULL } },
                     &rm->queued)) < 0 ||
            (r = metrics_gauge_register(
                     m, "homing_replica_lag_seconds",
                     "The largest lag of a warm replica behind its snapshot's newest version, by "
                     "priority level (database-wide).",
                     (const struct metrics_label[]){ { "priority", priorities }, { NULL, NULL } },
                     &rm->replica_lag)) < 0 ||
            (r = metrics_gauge_register(
                     m, "homing_replica_bytes_behind",
                     "Bytes the warm replicas lack of their snapshots' newest versions, by "
                     "priority level (database-wide).",
                     (const struct metrics_label[]){ { "priority", priorities }, { NULL, NULL } },
                     &rm->replica_behind)) < 0 ||
            (r = metrics_gauge_register(
                     m, "homing_replica_rpo_breached",
                     "Warm replicas lagging beyond their level's RPO, by priority level "
                     "(database-wide; alert on > 0).",
                     (const struct metrics_label[]){ { "priority", priorities }, { NULL, NULL } },
                     &rm->replica_breached)) < 0 ||
            (r = metrics_gauge_register(
                     m, "homing_failover_unrecoverable_snapshots",
                     "Snapshots active at a datacenter declared down, that no replica could take "
                     "over: unrecoverable until it returns, by priority level (database-wide).",
                     (const struct metrics_label[]){ { "priority", priorities }, { NULL, NULL } },
                     &rm->unrecoverable)) < 0 ||
            (r = metrics_gauge_register(
                     m, "homing_failover_failed_over_snapshots",
                     "Snapshots of the failovers still open (their site down) activated from a "
                     "replica, by priority level (database-wide).",
                     (const struct metrics_label[]){ { "priority", priorities }, { NULL, NULL } },
                     &rm->failed_over)) < 0 ||
            (r = metrics_gauge_register(
                     m, "homing_failover_versions_lost",
                     "Versions lost by the snapshots of the failovers still open (the replica's "
                     "version against the newest), by priority level (database-wide).",
                     (const struct metrics_label[]){ { "priority", priorities }, { NULL, NULL } },
                     &rm->lost_versions)) < 0 ||
            (r = metrics_gauge_register(
                     m, "homing_failover_data_loss_bytes",
                     "Bytes lost by the snapshots of the failovers still open (their replicas' "
                     "bytes behind at failover), by priority level (database-wide).",
                     (const struct metrics_label[]){ { "priority", priorities }, { NULL, NULL } },
                     &rm->lost_bytes)) < 0 ||
            (r = metrics_histogram_register(
                     m, "homing_pg_transaction_duration_seconds",
                     "PostgreSQL transactions, begin to commit or rollback.",
                     (const struct metrics_label[]){ { "component", components }, { NULL, NULL } },
                     metrics_buckets_request, METRICS_N_BUCKETS_REQUEST, &rm->tx_seconds)) < 0)
                log_error("relay", "cannot register the relay's metrics: %s", strerror(-r));
        return r;
}

/* The database-wide gauges: every relay keeps them, so aggregate them with max. */
static void refresh_gauges(struct store *db, struct relay_metrics *rm) {
        struct store_result *res = NULL;

        if (store_exec(db,
                       "SELECT count(*) FILTER (WHERE parked_at IS NULL),"
                       " coalesce(extract(epoch FROM now() -"
                       "          min(created_at) FILTER (WHERE parked_at IS NULL)), 0),"
                       " count(*) FILTER (WHERE parked_at IS NOT NULL)"
                       " FROM outbox WHERE sent_at IS NULL",
                       0, NULL, &res) == 0) {
                metrics_gauge_set(rm->backlog, NULL, store_double(res, 0, 0));
                metrics_gauge_set(rm->oldest, NULL, store_double(res, 0, 1));
                metrics_gauge_set(rm->parked, NULL, store_double(res, 0, 2));
        }
        res = store_result_free(res);
        if (store_exec(db,
                       "SELECT count(*) FILTER (WHERE state = 'queued'),"
                       " count(*) FILTER (WHERE state = 'running')"
                       " FROM transfers WHERE state IN ('queued', 'running')",
                       0, NULL, &res) == 0) {
                metrics_gauge_set(rm->transfers, (size_t[]){ 0 }, store_double(res, 0, 0));
                metrics_gauge_set(rm->transfers, (size_t[]){ 1 }, store_double(res, 0, 1));
        }
        res = store_result_free(res);
        if (store_exec(db,
                       "SELECT p, count(t.id) FROM generate_series(1, 5) p"
                       " LEFT JOIN transfers t ON t.priority = p AND t.state = 'queued'"
                       " GROUP BY p ORDER BY p",
                       0, NULL, &res) == 0)
                for (size_t i = 0; i < store_rows(res) && i < 5; i++)
                        metrics_gauge_set(rm->queued, (size_t[]){ i }, store_double(res, i, 1));
        res = store_result_free(res);
        if (store_exec(db,
                       "SELECT p, coalesce(max(l.lag_s), 0), coalesce(sum(l.bytes_behind), 0),"
                       " count(*) FILTER (WHERE l.lag_s > l.rpo_s)"
                       " FROM generate_series(1, 5) p"
                       " LEFT JOIN replica_lag l ON l.priority = p AND l.reason = 'protection'"
                       " GROUP BY p ORDER BY p",
                       0, NULL, &res) == 0)
                for (size_t i = 0; i < store_rows(res) && i < 5; i++) {
                        metrics_gauge_set(rm->replica_lag, (size_t[]){ i },
                                          store_double(res, i, 1));
                        metrics_gauge_set(rm->replica_behind, (size_t[]){ i },
                                          store_double(res, i, 2));
                        metrics_gauge_set(rm->replica_breached, (size_t[]){ i },
                                          store_double(res, i, 3));
                }
        res = store_result_free(res);
        /* Failovers (migration 023): what a site declared down cost, while it is. */
        if (store_exec(
                    db,
                    "SELECT p,"
                    " (SELECT count(*) FROM placements a JOIN snapshots s ON s.id = a.snapshot_id"
                    "  JOIN datacenters d ON d.id = a.datacenter_id"
                    "  WHERE a.active AND d.status = 'down' AND s.priority = p),"
                    " count(i.snapshot_id) FILTER (WHERE i.outcome = 'failed_over'),"
                    " coalesce(sum(i.versions_lost), 0), coalesce(sum(i.bytes_behind), 0)"
                    " FROM generate_series(1, 5) p"
                    " LEFT JOIN (failover_items i JOIN failovers f"
                    "   ON f.id = i.failover_id AND f.ended_at IS NULL) ON i.priority = p"
                    " GROUP BY p ORDER BY p",
                    0, NULL, &res) == 0)
                for (size_t i = 0; i < store_rows(res) && i < 5; i++) {
                        metrics_gauge_set(rm->unrecoverable, (size_t[]){ i },
                                          store_double(res, i, 1));
                        metrics_gauge_set(rm->failed_over, (size_t[]){ i },
                                          store_double(res, i, 2));
                        metrics_gauge_set(rm->lost_versions, (size_t[]){ i },
                                          store_double(res, i, 3));
                        metrics_gauge_set(rm->lost_bytes, (size_t[]){ i }, store_double(res, i, 4));
                }
        store_result_free(res);
}

/* One row's fate, written by the delivery callback. */
struct delivery {
        atomic_long *pending;
        int err;
};

static void on_delivered(void *opaque, int err) {
        struct delivery *d = opaque;
        d->err = err;
        atomic_fetch_sub(d->pending, 1);
}

static bool refused_for_its_own_sake(int err) {
        return err && err != -ETIMEDOUT && err != -ENOBUFS;
}

/*
 * Counts a refusal against each row in `refused` and parks those that reached
 * `max_attempts`, saying so once, where it happens.
 */
static int count_refusals(struct store *db, struct store_array *refused, const char *error,
                          long max_attempts) {
        struct store_result *res = NULL;
        char max[24];
        const char *params[3] = { store_array_text(refused), error, max };
        int r;

        if (!params[0])
                return -ENOMEM;
        snprintf(max, sizeof(max), "%ld", max_attempts);
        r = store_exec(db,
                       "UPDATE outbox SET attempts = attempts + 1, last_error = $2,"
                       " parked_at = CASE WHEN attempts + 1 >= $3::int THEN now() END"
                       " WHERE id = ANY ($1::bigint[])"
                       " RETURNING id, topic, attempts, parked_at IS NOT NULL",
                       3, params, &res);
        for (size_t i = 0; r == 0 && i < store_rows(res); i++)
                if (store_bool(res, i, 3))
                        log_error("relay",
                                  "outbox row %s for %s parked after %s refusals (%s): the rows "
                                  "behind it go on; see outbox.last_error",
                                  store_text(res, i, 0), store_text(res, i, 1),
                                  store_text(res, i, 2), error);
        store_result_free(res);
        return r;
}

/*
 * Publishes one batch if this relay may lead now. Returns the number of rows
 * Kafka stored (marked sent), -EBUSY when another relay leads, -EIO when some
 * rows were not stored (those stored are marked all the same), or another <0.
 */
static int relay_batch(struct store *db, struct bus_producer *producer, long max_attempts) {
        struct store_result *rows = NULL;
        struct delivery *deliveries = NULL;
        struct store_array sent, refused;
        atomic_long pending = 0;
        const char *refusal = NULL;
        size_t n = 0, stored = 0, failed = 0;
        int r;

        store_array_init(&sent);
        store_array_init(&refused);
        if ((r = store_begin(db)) < 0)
                goto out;
        r = store_exec(db, "SELECT pg_try_advisory_xact_lock(" RELAY_LOCK ")", 0, NULL, &rows);
        if (r == 0 && !store_bool(rows, 0, 0))
                r = -EBUSY;
        rows = store_result_free(rows);
        if (r < 0)
                goto out;
        r = store_exec(
                db,
                "SELECT id, topic, key, payload::text FROM outbox"
                " WHERE sent_at IS NULL AND parked_at IS NULL ORDER BY id LIMIT " RELAY_BATCH,
                0, NULL, &rows);
        if (r < 0 || (n = store_rows(rows)) == 0)
                goto out;
        deliveries = calloc(n, sizeof(*deliveries));
        if (!deliveries) {
                r = -ENOMEM;
                goto out;
        }

        atomic_store(&pending, (long)n);
        for (size_t i = 0; i < n; i++) {
                const char *key = store_text(rows, i, 2), *payload = store_text(rows, i, 3);
                deliveries[i].pending = &pending;
                do {
                        r = bus_produce(producer, store_text(rows, i, 1), key, strlen(key), payload,
                                        strlen(payload), &deliveries[i]);
                        if (r == -ENOBUFS)
                                usleep(1000);
                } while (r == -ENOBUFS);
                if (r < 0) {
                        /* No callback comes for this one. */
                        deliveries[i].err = r;
                        atomic_fetch_sub(&pending, 1);
                }
        }
        while (atomic_load(&pending) > 0)
                usleep(500);

        for (size_t i = 0; i < n; i++) {
                int err = deliveries[i].err;
                if (!err) {
                        store_array_add_int(&sent, store_int(rows, i, 0));
                        stored++;
                        continue;
                }
                failed++;
                if (refused_for_its_own_sake(err)) {
                        store_array_add_int(&refused, store_int(rows, i, 0));
                        refusal = strerror(-err);
                }
        }
        r = 0;
        if (stored) {
                const char *params[1] = { store_array_text(&sent) };
                r = !params[0] ? -ENOMEM
                               : store_exec(db,
                                            "UPDATE outbox SET sent_at = now()"
                                            " WHERE id = ANY ($1::bigint[])",
                                            1, params, NULL);
        }
        if (r == 0 && refused.n)
                r = count_refusals(db, &refused, refusal, max_attempts);
out:
        if (r == 0)
                r = store_commit(db);
        else
                store_rollback(db);
        if (r == 0 && failed) {
                log_warn("relay", "%zu of %zu outbox rows not stored by Kafka; will resend", failed,
                         n);
                r = -EIO;
        }
        store_result_free(rows);
        store_array_fini(&sent);
        store_array_fini(&refused);
        free(deliveries);
        return r < 0 ? r : (int)stored;
}

int relay_run(const struct config *cfg, struct metrics *metrics, atomic_bool *stop) {
        struct store *db = NULL;
        struct bus_producer *producer = NULL;
        struct relay_metrics rm = { 0 };
        char errbuf[512];
        bool leader = false, led;
        double refreshed = 0;
        int r;

        r = register_metrics(metrics, &rm);
        if (r < 0)
                return r;
        while ((r = store_connect(cfg->pg_dsn, &db)) < 0 && !atomic_load(stop))
                sleep(1);
        if (r < 0)
                return r;
        r = bus_producer_new(&(struct bus_cluster){ cfg->kafka_brokers, cfg->kafka_property,
                                                    cfg->kafka_properties_file },
                             &(struct bus_batching){ cfg->kafka_linger_ms, cfg->kafka_batch_bytes,
                                                     cfg->kafka_compression },
                             cfg->produce_timeout_ms, on_delivered, &producer, errbuf,
                             sizeof(errbuf));
        if (r < 0) {
                log_error("relay", "cannot create the producer: %s", errbuf);
                store_free(db);
                return r;
        }

        while (!atomic_load(stop)) {
                double started = metrics_now();

                if (started - refreshed >= 5) {
                        refresh_gauges(db, &rm);
                        refreshed = started;
                }
                r = relay_batch(db, producer, cfg->outbox_max_attempts);
                /* It led if it held the lock: it published, or Kafka refused. */
                led = r >= 0 || r == -EIO;
                if (led && !leader)
                        log_info("relay", "publishing the outbox");
                else if (r == -EBUSY && leader)
                        log_info("relay", "another relay publishes the outbox");
                if (led || r == -EBUSY)
                        leader = led;
                metrics_gauge_set(rm.leader, NULL, leader);
                if (leader)
                        metrics_histogram_observe(rm.tx_seconds, (size_t[]){ 1 } /* relay */,
                                                  metrics_now() - started);
                if (r > 0)
                        metrics_counter_add(rm.published, NULL, (uint64_t)r);
                if (r < 0 && r != -EBUSY)
                        metrics_counter_inc(rm.failures, NULL);
                if (r <= 0)
                        usleep(r == 0 ? 100 * 1000 : 1000 * 1000);
        }
        metrics_gauge_set(rm.leader, NULL, 0);
        producer = bus_producer_free(producer);
        store_free(db);
        return 0;
}
