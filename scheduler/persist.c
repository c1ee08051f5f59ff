/*
 * A decided batch's effects in PostgreSQL, inside the consumer loop's
 * transaction: the device fixes, each move (its transfer, reservation,
 * decision, job and audit events, and the cancel of the transfer it
 * supersedes), the recorded stays with their sampled audit events, the
 * snapshots' policy state and the dropped-report counts; and a dead letter.
 * Rows go many at a time, one column array per field (store_columns), and
 * the statements are sent in the batch's pipeline: none waits for an answer.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "base/hash.h"
#include "base/log.h"
#include "bus/bus.h"
#include "scheduler/internal.h"
#include "scheduler/world.h"
#include "store/store.h"

static int persist_devices(struct scheduler *s) {
        struct store_columns c;
        struct store_array *dev = &c.col[0], *user = &c.col[1], *lat = &c.col[2], *lon = &c.col[3],
                           *acc = &c.col[4], *ts = &c.col[5], *rcv = &c.col[6];

        if (s->n_devices == 0)
                return 0;
        store_columns_init(&c, 7);
        for (size_t i = 0; i < s->n_devices; i++) {
                struct device_update *d = &s->devices[i];
                struct tracked_device *td = &user_devices(d->user)[d->device];
                store_array_add_text(dev, td->id);
                store_array_add_text(user, d->user->id);
                /* as the record wrote them: PostgreSQL reads back the same doubles */
                store_array_add_double_text(lat, d->lat, d->lat_text.text, d->lat_text.len);
                store_array_add_double_text(lon, d->lon, d->lon_text.text, d->lon_text.len);
                store_array_add_double_text(acc, d->accuracy_m, d->accuracy_text.text,
                                            d->accuracy_text.len);
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
                struct tracked_snapshot *snap =
                        &user_snapshots(s->dirty[i].user)[s->dirty[i].snapshot];
                const struct engine_snapshot *p = &snap->policy;
                store_array_add_text(id, snap->id);
                store_array_add_text(cand, world_site_id(s->world, p->candidate));
                store_array_add_double(since, p->candidate == ENGINE_NO_SITE
                                                      ? NAN
                                                      : (double)p->candidate_since_ms);
                store_array_add_int(reps, p->candidate_reports);
                store_array_add_double(moved, p->last_move_ms ? (double)p->last_move_ms : NAN);
                store_array_add_double(wstart,
                                       p->window_start_ms ? (double)p->window_start_ms : NAN);
                store_array_add_int(wmoves, p->window_moves);
                store_array_add_text(outcome, snap->last_reason == ENGINE_OK      ? NULL
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
static void decision_details(const struct scheduler *s, const struct engine_decision *d, char *buf,
                             size_t size) {
        const char *nearest = world_site_id(s->world, d->nearest);
        snprintf(buf, size,
                 "{\"nearest_dc\": %s%s%s, \"dwell_ms\": %lld, \"dwell_reports\": %d,"
                 " \"bytes\": %llu, \"bytes_to_send\": %llu, \"template_present\": %s,"
                 " \"copy_present\": %s, \"margin_m\": %.0f, \"margin_ratio\": %g}",
                 nearest ? "\"" : "", nearest ? nearest : "null", nearest ? "\"" : "",
                 (long long)d->dwell_ms, d->dwell_reports, (unsigned long long)d->bytes,
                 (unsigned long long)d->send_bytes, d->template_present ? "true" : "false",
                 d->copy_present ? "true" : "false", s->policy.margin_m, s->policy.margin_ratio);
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
                store_array_add_text(audited,
                                     stay_audited(s, sn->id, &s->reports[rec->report]) ? "t" : "f");
                n++;
        }
        if (n == 0) {
                store_columns_fini(&c);
                return 0;
        }
        return store_exec_columns(s->db, stays_sql, &c, 1, topic, NULL);
}

/* A transfer a decision cancels — a move replaces it, or the user came back
 * — ends cancelled ($3 says why, $4 is the event's reason), with its audit
 * event. It is named by its id ($1) when it was loaded, or by its
 * idempotency key ($5) when a move of the same batch queued it: its id is not
 * known before the batch's answers. One that ended meanwhile (it
 * succeeded) stays as it ended. */
static const char cancel_sql[] =
        "WITH x AS (SELECT id FROM transfers WHERE id = $1::bigint OR idempotency_key = $5),"
        " ended AS (SELECT x.id, homing_transfer_ended(x.id, 'cancelled', $3) AS yes FROM x)"
        " INSERT INTO outbox (topic, key, payload)"
        " SELECT $2, t.snapshot_id, homing_cloudevent("
        "   'transfer-' || t.id || '-cancelled', '/homing/scheduler',"
        "   'io.homing.transfer.cancelled', now(), t.snapshot_id,"
        "   jsonb_build_object('transfer_id', t.id, 'snapshot_id', t.snapshot_id,"
        "     'from_dc', t.from_dc, 'to_dc', t.to_dc, 'reason', $4::text))"
        " FROM ended JOIN transfers t ON t.id = ended.id WHERE ended.yes";

/* A move's idempotency key: the report that caused it, so replaying it is a no-op. */
static void move_key(const struct scheduler *s, const struct decision_record *rec, char *key,
                     size_t size) {
        const struct batch_report *b = &s->reports[rec->report];
        snprintf(key, size, "%s/%s/%d/%lld", user_snapshots(rec->user)[rec->snapshot].id,
                 s->cfg->topic_locations, b->partition, (long long)b->offset);
}

/* Whether decision i moves its snapshot or withdraws a move (cancels a transfer). */
static bool touches_transfer(const struct decision_record *rec) {
        return rec->decision.outcome == ENGINE_MOVE || rec->decision.superseded != ENGINE_NO_SITE;
}

/*
 * Cancels the transfer in flight before decision i, if any: the one an
 * earlier decision of the batch queued (none if it withdrew one), else the
 * one loaded with the snapshot.
 */
static int cancel_pending(struct scheduler *s, size_t i, const char *why, const char *reason) {
        const struct decision_record *rec = &s->decisions[i];
        char id[32], key[200];
        const char *params[5] = { NULL, s->cfg->topic_audit, why, reason, NULL };

        for (size_t j = i; j-- > 0;) {
                const struct decision_record *prev = &s->decisions[j];
                if (prev->user != rec->user || prev->snapshot != rec->snapshot ||
                    !touches_transfer(prev))
                        continue;
                if (prev->decision.outcome != ENGINE_MOVE)
                        return 0;
                move_key(s, prev, key, sizeof(key));
                params[4] = key;
                return store_exec(s->db, cancel_sql, 5, params, NULL);
        }
        if (!user_snapshots(rec->user)[rec->snapshot].pending_transfer)
                return 0;
        snprintf(id, sizeof(id), "%lld",
                 (long long)user_snapshots(rec->user)[rec->snapshot].pending_transfer);
        params[0] = id;
        return store_exec(s->db, cancel_sql, 5, params, NULL);
}

/* The effects of one move, in one statement: the transfer, its reservation,
 * why, and the outbox rows (the job, as every writer builds it with
 * homing_transfer_job of migration 033, and two audit events). */
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
        "  SELECT $14, t.snapshot_id, homing_transfer_job(t::transfers) FROM t),"
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

static int persist_move(struct scheduler *s, size_t i) {
        struct decision_record *rec = &s->decisions[i];
        struct tracked_snapshot *snap = &user_snapshots(rec->user)[rec->snapshot];
        const struct batch_report *b = &s->reports[rec->report];
        const struct engine_decision *d = &rec->decision;
        char key[200], bytes[32], cur_m[32], target_m[32], lat[32], lon[32], ts[32];
        char details[512];
        const char *params[16] = { snap->id,
                                   world_site_id(s->world, snap->policy.current),
                                   world_site_id(s->world, d->target),
                                   d->template_present ? "true" : "false",
                                   key,
                                   bytes,
                                   rec->user->id,
                                   b->report.device_id,
                                   isfinite(d->current_m) ? cur_m : NULL,
                                   target_m,
                                   lat,
                                   lon,
                                   ts,
                                   s->cfg->topic_transfers,
                                   s->cfg->topic_audit,
                                   details };
        int r;

        r = cancel_pending(s, i, "superseded: the user settled nearer another datacenter",
                           "superseded");
        if (r < 0)
                return r;
        move_key(s, rec, key, sizeof(key));
        snprintf(bytes, sizeof(bytes), "%llu", (unsigned long long)d->bytes);
        snprintf(cur_m, sizeof(cur_m), "%.3f", d->current_m);
        snprintf(target_m, sizeof(target_m), "%.3f", d->target_m);
        snprintf(lat, sizeof(lat), "%.9f", b->report.lat);
        snprintf(lon, sizeof(lon), "%.9f", b->report.lon);
        snprintf(ts, sizeof(ts), "%lld", (long long)b->report.ts_ms);
        decision_details(s, d, details, sizeof(details));
        return store_exec(s->db, move_sql, 16, params, &rec->queued);
}

void scheduler_persist_done(struct scheduler *s, bool committed) {
        for (size_t i = 0; i < s->n_decisions; i++) {
                struct decision_record *rec = &s->decisions[i];
                struct tracked_snapshot *snap = &user_snapshots(rec->user)[rec->snapshot];
                const struct engine_decision *d = &rec->decision;

                if (committed && touches_transfer(rec)) {
                        /* The last of the batch's moves and withdrawals is what is in flight
                         * (a replayed move queued nothing: its transfer was decided before). */
                        bool queued = d->outcome == ENGINE_MOVE && rec->queued &&
                                      store_rows(rec->queued) == 1;
                        snap->pending_transfer = queued ? store_int(rec->queued, 0, 0) : 0;
                }
                if (committed && d->outcome == ENGINE_MOVE && rec->queued &&
                    store_rows(rec->queued) == 1) {
                        const char *ids[] = { "snapshot_id", snap->id,
                                              "user_id",     rec->user->id,
                                              "transfer_id", store_text(rec->queued, 0, 0),
                                              NULL };
                        const char *from = world_site_id(s->world, snap->policy.current);
                        log_line(LOG_INFO, "scheduler", ids, "move %s -> %s: %.0f m -> %.0f m%s",
                                 from ? from : "(nowhere)", world_site_id(s->world, d->target),
                                 d->current_m, d->target_m,
                                 d->superseded != ENGINE_NO_SITE ? " (superseding)" : "");
                        s->moves_total++;
                }
                rec->queued = store_result_free(rec->queued);
        }
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

int scheduler_persist_batch(struct scheduler *s) {
        int r = persist_devices(s);

        for (size_t i = 0; i < s->n_decisions && r == 0; i++) {
                struct decision_record *rec = &s->decisions[i];
                if (rec->decision.outcome == ENGINE_MOVE)
                        r = persist_move(s, i);
                else if (rec->decision.superseded != ENGINE_NO_SITE)
                        r = cancel_pending(s, i,
                                           "returned: the user came back near the current "
                                           "datacenter",
                                           "returned");
        }
        if (r == 0)
                r = persist_stays(s);
        if (r == 0)
                r = persist_policy_state(s);
        if (r == 0)
                r = persist_drops(s);
        return r;
}

int scheduler_persist_dead_letter(struct scheduler *s, size_t i, const char *error) {
        const struct batch_report *b = &s->reports[i];
        const void *value;
        size_t len;
        char part[16], off[32], *hex;
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
                const char *params[9] = { s->cfg->consumer_group,
                                          s->cfg->topic_locations,
                                          part,
                                          off,
                                          hex,
                                          error,
                                          s->cfg->topic_audit,
                                          b->report.user_id,
                                          b->report.device_id };
                r = store_exec(s->db, quarantine_sql, 9, params, NULL);
        }
        free(hex);
        return r;
}
