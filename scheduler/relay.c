/*
 * The outbox relay: publishes rows that committed transactions put in the
 * outbox, in id order, and marks them sent once Kafka has stored every one.
 * At least once: a crash between delivery and the mark sends a row again,
 * with the same event id, so consumers can drop the duplicate. One relay
 * holds an advisory lock and works; others wait their turn, which keeps
 * the order.
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
        struct metrics_gauge *leader, *backlog, *oldest, *transfers; /* transfers {state} */
        struct metrics_gauge *queued;                                 /* {priority} */
        struct metrics_histogram *tx_seconds;                         /* {component} */
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
            (r = metrics_gauge_register(m, "homing_outbox_backlog_rows",
                                        "Outbox rows not yet published (database-wide).", NULL,
                                        &rm->backlog)) < 0 ||
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

        if (store_exec(db, "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)"
                           " FROM outbox WHERE sent_at IS NULL", 0, NULL, &res) == 0) {
                metrics_gauge_set(rm->backlog, NULL, store_double(res, 0, 0));
                metrics_gauge_set(rm->oldest, NULL, store_double(res, 0, 1));
        }
        res = store_result_free(res);
        if (store_exec(db, "SELECT count(*) FILTER (WHERE state = 'queued'),"
                           " count(*) FILTER (WHERE state = 'running')"
                           " FROM transfers WHERE state IN ('queued', 'running')",
                       0, NULL, &res) == 0) {
                metrics_gauge_set(rm->transfers, (size_t[]){ 0 }, store_double(res, 0, 0));
                metrics_gauge_set(rm->transfers, (size_t[]){ 1 }, store_double(res, 0, 1));
        }
        res = store_result_free(res);
        if (store_exec(db, "SELECT p, count(t.id) FROM generate_series(1, 5) p"
                           " LEFT JOIN transfers t ON t.priority = p AND t.state = 'queued'"
                           " GROUP BY p ORDER BY p",
                       0, NULL, &res) == 0)
                for (size_t i = 0; i < store_rows(res) && i < 5; i++)
                        metrics_gauge_set(rm->queued, (size_t[]){ i }, store_double(res, i, 1));
        store_result_free(res);
}

struct delivery_count {
        atomic_long pending;
        atomic_long failed;
};

static void on_delivered(void *opaque, int err) {
        struct delivery_count *count = opaque;
        if (err)
                atomic_fetch_add(&count->failed, 1);
        atomic_fetch_sub(&count->pending, 1);
}

/* Publishes one batch. Returns the number of rows sent, or <0. */
static int relay_batch(struct store *db, struct bus_producer *producer) {
        struct store_result *rows = NULL;
        struct delivery_count count = { 0 };
        struct store_array ids;
        size_t n = 0;
        int r;

        store_array_init(&ids);
        if ((r = store_begin(db)) < 0)
                return r;
        r = store_exec(db, "SELECT id, topic, key, payload::text FROM outbox"
                           " WHERE sent_at IS NULL ORDER BY id LIMIT " RELAY_BATCH,
                       0, NULL, &rows);
        if (r < 0)
                goto out;
        n = store_rows(rows);
        if (n == 0)
                goto out;

        atomic_store(&count.pending, (long)n);
        for (size_t i = 0; i < n; i++) {
                const char *key = store_text(rows, i, 2), *payload = store_text(rows, i, 3);
                do {
                        r = bus_produce(producer, store_text(rows, i, 1), key, strlen(key),
                                        payload, strlen(payload), &count);
                        if (r == -ENOBUFS)
                                usleep(1000);
                } while (r == -ENOBUFS);
                if (r < 0) {
                        /* No callback comes for this one or the rest. */
                        atomic_fetch_sub(&count.pending, (long)(n - i));
                        atomic_fetch_add(&count.failed, 1);
                        break;
                }
                store_array_add_int(&ids, store_int(rows, i, 0));
        }
        while (atomic_load(&count.pending) > 0)
                usleep(500);
        if (atomic_load(&count.failed)) {
                log_warn("relay", "%ld of %zu outbox rows not stored by Kafka; will resend",
                         atomic_load(&count.failed), n);
                r = -EIO;
                goto out;
        }
        {
                const char *params[1] = { store_array_text(&ids) };
                r = !params[0] ? -ENOMEM
                               : store_exec(db, "UPDATE outbox SET sent_at = now()"
                                                " WHERE id = ANY ($1::bigint[])",
                                            1, params, NULL);
        }
out:
        if (r == 0)
                r = store_commit(db);
        else
                store_rollback(db);
        store_result_free(rows);
        store_array_fini(&ids);
        return r < 0 ? r : (int)n;
}

int relay_run(const struct config *cfg, struct metrics *metrics, atomic_bool *stop) {
        struct store *db = NULL;
        struct bus_producer *producer = NULL;
        struct relay_metrics rm = { 0 };
        char errbuf[512];
        bool leader = false;
        double refreshed = 0;
        int r;

        r = register_metrics(metrics, &rm);
        if (r < 0)
                return r;
        while ((r = store_connect(cfg->pg_dsn, &db)) < 0 && !atomic_load(stop))
                sleep(1);
        if (r < 0)
                return r;
        r = bus_producer_new(cfg->kafka_brokers, cfg->produce_timeout_ms, on_delivered, &producer,
                             errbuf, sizeof(errbuf));
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
                metrics_gauge_set(rm.leader, NULL, leader);
                if (!leader) {
                        struct store_result *res = NULL;
                        if (store_exec(db, "SELECT pg_try_advisory_lock(" RELAY_LOCK ")", 0, NULL,
                                       &res) == 0 && store_bool(res, 0, 0)) {
                                leader = true;
                                log_info("relay", "publishing the outbox");
                        }
                        store_result_free(res);
                        if (!leader) {
                                sleep(1);
                                continue;
                        }
                }
                r = relay_batch(db, producer);
                metrics_histogram_observe(rm.tx_seconds, (size_t[]){ 1 } /* relay */,
                                          metrics_now() - started);
                if (r > 0)
                        metrics_counter_add(rm.published, NULL, (uint64_t)r);
                /* The lock may have gone with a broken connection: take it again
                 * (re-taking a lock this session holds is harmless). */
                if (r < 0) {
                        metrics_counter_inc(rm.failures, NULL);
                        leader = false;
                }
                if (r <= 0)
                        usleep(r < 0 ? 1000 * 1000 : 100 * 1000);
        }
        metrics_gauge_set(rm.leader, NULL, 0);
        producer = bus_producer_free(producer);
        store_free(db);
        return 0;
}
