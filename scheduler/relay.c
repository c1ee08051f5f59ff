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
#include "store/store.h"

#define RELAY_BATCH "500"
#define RELAY_LOCK "727002"

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
        char *ids = NULL;
        size_t n = 0, ids_len = 0;
        int r;

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

        ids = malloc(n * 24 + 3);
        if (!ids) {
                r = -ENOMEM;
                goto out;
        }
        ids[ids_len++] = '{';
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
                ids_len += (size_t)sprintf(ids + ids_len, "%s%s", i ? "," : "",
                                           store_text(rows, i, 0));
        }
        ids[ids_len++] = '}';
        ids[ids_len] = '\0';
        while (atomic_load(&count.pending) > 0)
                usleep(500);
        if (atomic_load(&count.failed)) {
                log_warn("relay", "%ld of %zu outbox rows not stored by Kafka; will resend",
                         atomic_load(&count.failed), n);
                r = -EIO;
                goto out;
        }
        {
                const char *params[1] = { ids };
                r = store_exec(db, "UPDATE outbox SET sent_at = now() WHERE id = ANY ($1::bigint[])",
                               1, params, NULL);
        }
out:
        if (r == 0)
                r = store_commit(db);
        else
                store_rollback(db);
        store_result_free(rows);
        free(ids);
        return r < 0 ? r : (int)n;
}

int relay_run(const struct config *cfg, atomic_bool *stop) {
        struct store *db = NULL;
        struct bus_producer *producer = NULL;
        char errbuf[512];
        bool leader = false;
        int r;

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
                /* The lock may have gone with a broken connection: take it again
                 * (re-taking a lock this session holds is harmless). */
                if (r < 0)
                        leader = false;
                if (r <= 0)
                        usleep(r < 0 ? 1000 * 1000 : 100 * 1000);
        }
        producer = bus_producer_free(producer);
        store_free(db);
        return 0;
}
