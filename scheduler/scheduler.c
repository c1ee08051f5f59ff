/*
 * The consumer loop. Offsets live in PostgreSQL, not in Kafka: a batch's
 * effects and its advanced offsets commit together, and the offset update
 * is conditional on the value this process last saw, so a process that lost
 * its partitions (a rebalance, a pause, a zombie) cannot commit twice what
 * another already did. On assignment, each partition resumes from the offset
 * stored in PostgreSQL.
 */
#include "scheduler/scheduler.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/config.h"
#include "base/log.h"
#include "bus/bus.h"
#include "report/report.h"
#include "scheduler/engine.h"
#include "store/store.h"

#define MAX_PARTITIONS 1024

struct partition_state {
        bool assigned;
        bool stored;  /* a row exists in consumer_offsets */
        int64_t next; /* the next offset to process, as PostgreSQL has it */
};

struct catalog {
        struct engine_site *sites;
        char **ids;
        size_t n;
        time_t loaded_at;
};

struct scheduler {
        const struct config *cfg;
        struct store *db;
        struct bus_consumer *consumer;
        struct engine_policy policy;
        struct catalog catalog;
        struct bus_message **batch;
        size_t n_batch;
        struct partition_state parts[MAX_PARTITIONS];
        unsigned long reports, invalid, moves;
};

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void catalog_clear(struct catalog *c) {
        for (size_t i = 0; i < c->n; i++)
                free(c->ids[i]);
        free(c->ids);
        free(c->sites);
        memset(c, 0, sizeof(*c));
}

/* Loads the datacenters a snapshot may move to. Keeps the old list on failure. */
static int catalog_load(struct scheduler *s) {
        struct store_result *res = NULL;
        struct catalog fresh = { 0 };
        int r;

        r = store_exec(s->db, "SELECT id, lat, lon FROM datacenters WHERE status = 'active' "
                              "ORDER BY id", 0, NULL, &res);
        if (r < 0)
                return r;
        fresh.n = store_rows(res);
        fresh.sites = calloc(fresh.n + 1, sizeof(*fresh.sites));
        fresh.ids = calloc(fresh.n + 1, sizeof(*fresh.ids));
        if (!fresh.sites || !fresh.ids) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < fresh.n; i++) {
                fresh.ids[i] = strdup(store_text(res, i, 0));
                if (!fresh.ids[i]) {
                        r = -ENOMEM;
                        goto out;
                }
                fresh.sites[i] = (struct engine_site){ fresh.ids[i], store_double(res, i, 1),
                                                       store_double(res, i, 2) };
        }
        fresh.loaded_at = time(NULL);
        catalog_clear(&s->catalog);
        s->catalog = fresh;
        fresh = (struct catalog){ 0 };
out:
        catalog_clear(&fresh);
        store_result_free(res);
        return r;
}

static int on_assign(void *ctx, struct bus_partition *parts, size_t n) {
        struct scheduler *s = ctx;
        const char *params[2] = { s->cfg->consumer_group, s->cfg->topic_locations };
        struct store_result *res = NULL;
        int r;

        r = store_exec(s->db, "SELECT partition, next_offset FROM consumer_offsets "
                              "WHERE group_id = $1 AND topic = $2", 2, params, &res);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                struct partition_state *p;
                if (parts[i].partition < 0 || parts[i].partition >= MAX_PARTITIONS) {
                        store_result_free(res);
                        return -ERANGE;
                }
                p = &s->parts[parts[i].partition];
                *p = (struct partition_state){ .assigned = true };
                for (size_t row = 0; row < store_rows(res); row++) {
                        if (store_int(res, row, 0) == parts[i].partition) {
                                p->stored = true;
                                p->next = store_int(res, row, 1);
                        }
                }
                parts[i].offset = p->stored ? p->next : -1;
        }
        store_result_free(res);
        return 0;
}

static int batch_commit(struct scheduler *s);

static void on_revoke(void *ctx, const struct bus_partition *parts, size_t n) {
        struct scheduler *s = ctx;

        /* Finish what we hold before the partitions go to another process. */
        batch_commit(s);
        for (size_t i = 0; i < n; i++)
                if (parts[i].partition >= 0 && parts[i].partition < MAX_PARTITIONS)
                        s->parts[parts[i].partition].assigned = false;
}

/* The effects of one move, in one statement: the transfer, why, and the outbox. */
static const char move_sql[] =
        "WITH present AS ("
        "  SELECT EXISTS (SELECT 1 FROM template_replicas"
        "                 WHERE template_id = $4 AND datacenter_id = $3) AS yes),"
        " t AS ("
        "  INSERT INTO transfers (snapshot_id, from_dc, to_dc, template_id, template_present,"
        "                         priority, reason, idempotency_key, bytes_total)"
        "  SELECT $1, $2, $3, $4, present.yes, $5::int, $6, $7,"
        "         $8::bigint + CASE WHEN present.yes THEN 0"
        "                      ELSE (SELECT size_bytes FROM templates WHERE id = $4) END"
        "  FROM present"
        "  ON CONFLICT (idempotency_key) DO NOTHING"
        "  RETURNING *),"
        " d AS ("
        "  INSERT INTO decisions (snapshot_id, user_id, device_id, outcome, reason, from_dc,"
        "                         to_dc, from_distance_m, to_distance_m, report_lat, report_lon,"
        "                         report_ts, transfer_id)"
        "  SELECT t.snapshot_id, $9, $10, 'move', $6, $2, $3, $11::float8, $12::float8,"
        "         $13::float8, $14::float8, to_timestamp($15::float8 / 1000), t.id FROM t),"
        " job AS ("
        "  INSERT INTO outbox (topic, key, payload)"
        "  SELECT $16, t.snapshot_id, jsonb_build_object("
        "    'transfer_id', t.id, 'snapshot_id', t.snapshot_id, 'from_dc', t.from_dc,"
        "    'to_dc', t.to_dc, 'template_id', t.template_id,"
        "    'template_present', t.template_present, 'priority', t.priority,"
        "    'reason', t.reason, 'bytes_total', t.bytes_total,"
        "    'idempotency_key', t.idempotency_key) FROM t),"
        " audit AS ("
        "  INSERT INTO outbox (topic, key, payload)"
        "  SELECT $17, t.snapshot_id, jsonb_build_object("
        "    'specversion', '1.0', 'id', 'transfer-' || t.id || '-queued',"
        "    'source', '/homing/scheduler', 'type', 'io.homing.transfer.queued',"
        "    'time', to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
        "    'subject', t.snapshot_id, 'datacontenttype', 'application/json',"
        "    'data', jsonb_build_object('transfer_id', t.id, 'snapshot_id', t.snapshot_id,"
        "      'user_id', $9, 'from_dc', t.from_dc, 'to_dc', t.to_dc, 'reason', t.reason,"
        "      'from_distance_m', $11::float8, 'to_distance_m', $12::float8,"
        "      'template_present', t.template_present)) FROM t)"
        "SELECT id FROM t";

static int record_move(struct scheduler *s, const struct report *rep, const char *snapshot_id,
                       const char *template_id, const char *priority, const char *size,
                       const char *from_dc, const struct engine_decision *d,
                       int32_t partition, int64_t offset) {
        char key[160], cur_m[32], target_m[32], lat[32], lon[32], ts[32];
        const char *to_dc = s->catalog.sites[d->target].id;
        const char *params[17] = { snapshot_id, from_dc, to_dc, template_id, priority, d->reason,
                                   key, size, rep->user_id, rep->device_id, cur_m, target_m,
                                   lat, lon, ts, s->cfg->topic_transfers, s->cfg->topic_audit };
        struct store_result *res = NULL;
        int r;

        /* The report that caused it names the transfer: replaying it is a no-op. */
        snprintf(key, sizeof(key), "%s/%s/%d/%lld", snapshot_id, s->cfg->topic_locations,
                 partition, (long long)offset);
        snprintf(cur_m, sizeof(cur_m), "%.3f", d->current_m);
        snprintf(target_m, sizeof(target_m), "%.3f", d->target_m);
        snprintf(lat, sizeof(lat), "%.9f", rep->lat);
        snprintf(lon, sizeof(lon), "%.9f", rep->lon);
        snprintf(ts, sizeof(ts), "%lld", (long long)rep->ts_ms);

        r = store_exec(s->db, move_sql, 17, params, &res);
        if (r == 0 && store_rows(res) == 1) {
                const char *ids[] = { "snapshot_id", snapshot_id, "user_id", rep->user_id,
                                      "transfer_id", store_text(res, 0, 0), NULL };
                log_line(LOG_INFO, "scheduler", ids, "move %s -> %s: %.0f m -> %.0f m", from_dc,
                         to_dc, d->current_m, d->target_m);
                s->moves++;
        }
        store_result_free(res);
        return r;
}

static int process_report(struct scheduler *s, const struct report *rep, int32_t partition,
                          int64_t offset) {
        char lat[32], lon[32], acc[32], ts[32], received[32];
        const char *loc[] = { rep->device_id, rep->user_id, lat, lon, acc, ts, received };
        const char *user[] = { rep->user_id };
        struct store_result *res = NULL;
        int r;

        snprintf(lat, sizeof(lat), "%.9f", rep->lat);
        snprintf(lon, sizeof(lon), "%.9f", rep->lon);
        snprintf(acc, sizeof(acc), "%.3f", rep->accuracy_m);
        snprintf(ts, sizeof(ts), "%lld", (long long)rep->ts_ms);
        snprintf(received, sizeof(received), "%lld", (long long)rep->received_ms);

        /* The last known location of the device; an older report does not overwrite it. */
        r = store_exec(s->db,
                       "INSERT INTO device_locations (device_id, user_id, lat, lon, accuracy_m,"
                       " reported_at, received_at)"
                       " VALUES ($1, $2, $3, $4, $5, to_timestamp($6::float8 / 1000),"
                       "         to_timestamp($7::float8 / 1000))"
                       " ON CONFLICT (device_id) DO UPDATE SET user_id = excluded.user_id,"
                       "  lat = excluded.lat, lon = excluded.lon, accuracy_m = excluded.accuracy_m,"
                       "  reported_at = excluded.reported_at, received_at = excluded.received_at,"
                       "  updated_at = now()"
                       " WHERE device_locations.reported_at <= excluded.reported_at",
                       7, loc, NULL);
        if (r < 0)
                return r;

        r = store_exec(s->db,
                       "SELECT s.id, s.template_id, s.priority, s.size_bytes, p.datacenter_id,"
                       "       dc.lat, dc.lon, t.to_dc"
                       " FROM snapshots s"
                       " JOIN placements p ON p.snapshot_id = s.id AND p.active"
                       " JOIN datacenters dc ON dc.id = p.datacenter_id"
                       " LEFT JOIN transfers t ON t.snapshot_id = s.id"
                       "  AND t.state IN ('queued', 'running')"
                       " WHERE s.user_id = $1 ORDER BY s.id",
                       1, user, &res);
        if (r < 0)
                return r;

        for (size_t i = 0; i < store_rows(res) && r == 0; i++) {
                struct engine_decision d;
                const char *current = store_text(res, i, 4);

                engine_decide(&s->policy, s->catalog.sites, s->catalog.n, current,
                              store_double(res, i, 5), store_double(res, i, 6), rep->lat,
                              rep->lon, &d);
                /* One transfer in flight per snapshot; superseding it is policy work to come. */
                if (d.outcome != ENGINE_MOVE || store_text(res, i, 7))
                        continue;
                r = record_move(s, rep, store_text(res, i, 0), store_text(res, i, 1),
                                store_text(res, i, 2), store_text(res, i, 3), current, &d,
                                partition, offset);
        }
        store_result_free(res);
        return r;
}

/* Advances a partition's stored offset from what we last saw; 0 rows means we lost it. */
static int advance_offset(struct scheduler *s, int32_t partition, int64_t next) {
        char part[16], next_s[32], expected[32];
        const char *params[5] = { s->cfg->consumer_group, s->cfg->topic_locations, part, next_s,
                                  expected };
        struct partition_state *p = &s->parts[partition];
        struct store_result *res = NULL;
        int r;

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

static void batch_clear(struct scheduler *s) {
        for (size_t i = 0; i < s->n_batch; i++)
                s->batch[i] = bus_message_free(s->batch[i]);
        s->n_batch = 0;
}

/* After a failed batch: forget what we thought and read again from PostgreSQL. */
static void rewind_partitions(struct scheduler *s) {
        for (int32_t p = 0; p < MAX_PARTITIONS; p++) {
                struct bus_partition part = { p, -1 };
                if (!s->parts[p].assigned)
                        continue;
                if (on_assign(s, &part, 1) == 0)
                        bus_consumer_seek(s->consumer, p, part.offset);
        }
}

static int batch_commit(struct scheduler *s) {
        int64_t last[MAX_PARTITIONS];
        bool touched[MAX_PARTITIONS] = { false };
        int r;

        if (s->n_batch == 0)
                return 0;
        r = store_begin(s->db);
        for (size_t i = 0; i < s->n_batch && r == 0; i++) {
                struct bus_message *m = s->batch[i];
                int32_t p = bus_message_partition(m);
                int64_t off = bus_message_offset(m);
                struct report rep;
                const void *value;
                size_t len;

                /* Behind what PostgreSQL holds: already done (we were re-seeked). */
                if (p < 0 || p >= MAX_PARTITIONS || (s->parts[p].stored && off < s->parts[p].next))
                        continue;
                touched[p] = true;
                last[p] = off;
                value = bus_message_value(m, &len);
                if (report_decode(value, len, &rep) < 0) {
                        /* The API validated it; a bad one here came from elsewhere. */
                        log_warn("scheduler", "partition %d offset %lld: not a location report; skipped",
                                 p, (long long)off);
                        s->invalid++;
                        continue;
                }
                s->reports++;
                r = process_report(s, &rep, p, off);
        }
        for (int32_t p = 0; p < MAX_PARTITIONS && r == 0; p++)
                if (touched[p])
                        r = advance_offset(s, p, last[p] + 1);
        if (r == 0)
                r = store_commit(s->db);
        if (r == 0) {
                for (int32_t p = 0; p < MAX_PARTITIONS; p++) {
                        if (touched[p]) {
                                s->parts[p].stored = true;
                                s->parts[p].next = last[p] + 1;
                        }
                }
        } else {
                store_rollback(s->db);
                if (r == -ESTALE)
                        log_warn("scheduler", "another scheduler advanced a partition first; "
                                              "re-reading offsets");
                else
                        log_error("scheduler", "batch of %zu reports rolled back; will retry",
                                  s->n_batch);
                rewind_partitions(s);
        }
        batch_clear(s);
        return r;
}

int scheduler_run(const struct config *cfg, atomic_bool *stop) {
        struct scheduler s = { .cfg = cfg, .policy = { .margin_m = cfg->move_margin_m } };
        struct bus_consumer_ops ops = { on_assign, on_revoke };
        char errbuf[512];
        int r;

        s.batch = calloc((size_t)cfg->batch_max, sizeof(*s.batch));
        if (!s.batch)
                return -ENOMEM;
        while ((r = store_connect(cfg->pg_dsn, &s.db)) < 0 && !atomic_load(stop))
                sleep(1);
        if (r < 0)
                goto out;
        while ((r = catalog_load(&s)) < 0 && !atomic_load(stop))
                sleep(1);
        if (r < 0)
                goto out;
        r = bus_consumer_new(cfg->kafka_brokers, cfg->consumer_group, cfg->topic_locations, &ops,
                             &s, &s.consumer, errbuf, sizeof(errbuf));
        if (r < 0) {
                log_error("scheduler", "cannot create the consumer: %s", errbuf);
                goto out;
        }
        log_info("scheduler", "consuming %s as group %s; %zu active datacenters",
                 cfg->topic_locations, cfg->consumer_group, s.catalog.n);

        while (!atomic_load(stop)) {
                int64_t deadline = now_ms() + cfg->batch_wait_ms;

                if (time(NULL) - s.catalog.loaded_at >= cfg->catalog_refresh_s)
                        catalog_load(&s);
                while (s.n_batch < (size_t)cfg->batch_max && !atomic_load(stop)) {
                        struct bus_message *m;
                        int64_t left = deadline - now_ms();
                        r = bus_consumer_poll(s.consumer, s.n_batch ? (left > 0 ? left : 0) : 200, &m);
                        if (r == 1)
                                s.batch[s.n_batch++] = m;
                        else if (s.n_batch ? left <= 0 : true)
                                break;
                }
                if (batch_commit(&s) < 0)
                        usleep(200 * 1000);
        }
        r = 0;
        log_info("scheduler", "stopping: %lu reports, %lu moves, %lu invalid", s.reports, s.moves,
                 s.invalid);
out:
        batch_clear(&s);
        s.consumer = bus_consumer_free(s.consumer); /* revokes: on_revoke commits nothing left */
        catalog_clear(&s.catalog);
        s.db = store_free(s.db);
        free(s.batch);
        return r;
}
