/*
 * The consumer loop, and the partitions and offsets it commits by. Reports
 * arrive in batches; each batch's users are loaded (load.c), decided in
 * memory (decide.c: engine.c over the state in state.c) and its effects —
 * device fixes, policy state, decisions, transfers, outbox rows — written
 * (persist.c) and committed in one PostgreSQL transaction together with the
 * advanced offsets; stats.c counts what committed.
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
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/config.h"
#include "base/log.h"
#include "bus/bus.h"
#include "metrics/metrics.h"
#include "report/report.h"
#include "scheduler/engine.h"
#include "scheduler/internal.h"
#include "scheduler/state.h"
#include "scheduler/world.h"
#include "store/store.h"

/* For /readyz in a process that also serves the API: the group has taken us in. */
static atomic_bool consumer_assigned;

bool scheduler_consumer_assigned(void) {
        return atomic_load(&consumer_assigned);
}

/* ---- partitions and offsets ---- */

static int read_offsets(struct scheduler *s, struct store_result **res) {
        const char *params[2] = { s->cfg->consumer_group, s->cfg->topic_locations };
        return store_exec(s->db,
                          "SELECT partition, next_offset FROM consumer_offsets "
                          "WHERE group_id = $1 AND topic = $2",
                          2, params, res);
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

static void batch_send(struct scheduler *s);
static void batch_finish(struct scheduler *s);

static int on_assign(void *ctx, struct bus_partition *parts, size_t n) {
        struct scheduler *s = ctx;
        struct store_result *res = NULL;
        int r;

        for (size_t i = 0; i < n; i++)
                if (parts[i].partition < 0 || parts[i].partition >= MAX_PARTITIONS)
                        return -ERANGE;
        batch_finish(s); /* the connection is the batch's until its answers are read */
        /* Without PostgreSQL the start is unknown: hold them until it answers. */
        r = read_offsets(s, &res);
        for (size_t i = 0; i < n; i++) {
                struct partition_state *p = &s->parts[parts[i].partition];
                *p = (struct partition_state){ .assigned = true,
                                               .held = true,
                                               .isolate_through = -1 };
                parts[i].offset =
                        r == 0 ? take_offset(p, parts[i].partition, res) : BUS_OFFSET_HOLD;
                /* Whatever we knew of its users may be stale now. */
                user_table_drop_partition(s->users, parts[i].partition);
        }
        store_result_free(res);
        if (r < 0)
                log_warn("scheduler",
                         "cannot read the offsets of %zu assigned partitions; "
                         "holding them until PostgreSQL answers",
                         n);
        atomic_store(&consumer_assigned, true);
        return 0;
}

static void on_revoke(void *ctx, const struct bus_partition *parts, size_t n) {
        struct scheduler *s = ctx;

        /* Finish what we hold before the partitions go to another process:
         * the batch in flight, then what was read ahead of it. */
        batch_finish(s);
        batch_send(s);
        batch_finish(s);
        for (size_t i = 0; i < n; i++) {
                if (parts[i].partition >= 0 && parts[i].partition < MAX_PARTITIONS) {
                        s->parts[parts[i].partition].assigned = false;
                        user_table_drop_partition(s->users, parts[i].partition);
                }
        }
}

/*
 * Advances the stored offsets of `n` partitions from what we last saw, in one
 * statement that fails with -ESTALE (and aborts the transaction) when one was
 * moved by another process: we lost it. `first` is the batch's first offset
 * there: anything but the stored next one would skip reports, and is refused.
 * Inside a pipeline it is only sent, and fails at its end.
 */
static int advance_offsets(struct scheduler *s, size_t n, const int32_t *partitions,
                           const int64_t *first, const int64_t *next) {
        const char *params[2] = { s->cfg->consumer_group, s->cfg->topic_locations };
        struct store_columns c;

        store_columns_init(&c, 3);
        for (size_t i = 0; i < n; i++) {
                const struct partition_state *p = &s->parts[partitions[i]];
                if (p->stored && first[i] != p->next) {
                        log_error("scheduler",
                                  "partition %d: a batch from offset %lld where %lld is due; "
                                  "not committed",
                                  partitions[i], (long long)first[i], (long long)p->next);
                        store_columns_fini(&c);
                        return -ESPIPE;
                }
                store_array_add_int(&c.col[0], partitions[i]);
                if (p->stored)
                        store_array_add_int(&c.col[1], p->next);
                else
                        store_array_add_text(&c.col[1], NULL);
                store_array_add_int(&c.col[2], next[i]);
        }
        return store_exec_columns(s->db,
                                  "SELECT homing_advance_offsets($4, $5, $1::int[], $2::int8[],"
                                  " $3::int8[])",
                                  &c, 2, params, NULL);
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
 * The seek does not wait to land (a wait into a partition being revoked
 * held the loop 5 s a partition): what it leaves behind never comes, and
 * batch_send takes the first message that does only at the offset set
 * here as `expect`, else holds the partition again.
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

static void batch_clear(struct scheduler *s) {
        for (size_t i = 0; i < s->n_messages; i++) {
                s->messages[i] = bus_message_free(s->messages[i]);
                s->reports[i].decoded = 0;
        }
        s->n_messages = s->n_devices = s->n_decisions = s->n_dirty = 0;
        memset(s->drops, 0, sizeof(s->drops));
        memset(s->tally_decisions, 0, sizeof(s->tally_decisions));
        s->tally_superseded = s->tally_invalid = 0;
}

/* A message's report, decoded: a pure function of the message, so it may
 * run before the batch ahead of it has committed. */
static void decode_message(struct bus_message *m, struct batch_report *b) {
        struct report_read read;
        const void *value;
        size_t len;

        memset(b, 0, sizeof(*b));
        value = bus_message_value(m, &len);
        b->decoded = report_decode_read(value, len, &read) < 0 ? -1 : 1;
        if (b->decoded > 0) {
                b->report = read.report;
                b->lat_text = read.lat;
                b->lon_text = read.lon;
                b->accuracy_text = read.accuracy_m;
        }
}

/* What was read ahead becomes the batch (it is empty by then), or is
 * dropped with a batch that failed: its partitions rewind, and it comes again. */
static void take_ahead(struct scheduler *s, bool keep) {
        if (!keep) {
                for (size_t i = 0; i < s->n_ahead; i++)
                        s->ahead[i] = bus_message_free(s->ahead[i]);
        } else if (s->n_messages == 0) {
                struct bus_message **m = s->messages;
                struct batch_report *r = s->reports;
                s->messages = s->ahead;
                s->reports = s->ahead_reports;
                s->ahead = m;
                s->ahead_reports = r;
                s->n_messages = s->n_ahead;
        } else {
                /* Met after an on_assign inside read_ahead moved the read-ahead
                 * into the batch and the same poll brought more: never past
                 * batch_max then; were it, a message left out makes a gap,
                 * and its partition rewinds. */
                for (size_t i = 0; i < s->n_ahead; i++) {
                        if (s->n_messages < (size_t)s->cfg->batch_max) {
                                s->messages[s->n_messages] = s->ahead[i];
                                s->reports[s->n_messages++] = s->ahead_reports[i];
                        } else {
                                s->ahead[i] = bus_message_free(s->ahead[i]);
                        }
                }
        }
        s->n_ahead = 0;
}

/*
 * A report whose effects fail on their own, every time (the batch was cut
 * down to it), is set aside in dead_letters with its offset passed, so that
 * its partition goes on. Returns 0, or <0 when even that failed.
 */
static int quarantine(struct scheduler *s, size_t i, const char *error) {
        const struct batch_report *b = &s->reports[i];
        int r;

        r = store_begin(s->db);
        if (r == 0)
                r = scheduler_persist_dead_letter(s, i, error);
        if (r == 0)
                r = advance_offsets(s, 1, &b->partition, &b->offset, &(int64_t){ b->offset + 1 });
        if (r == 0)
                r = store_commit(s->db);
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

/*
 * The batch's effects, its offsets and the COMMIT, sent together in one
 * pipeline and answered together (batch_finish): one round trip, which
 * PostgreSQL runs while the loop reads the next batch ahead. Returns 0 once
 * all is sent; otherwise the transaction is left for the caller to roll back.
 */
static int batch_write(struct scheduler *s) {
        struct batch_flight *f = &s->flight;
        int32_t parts[MAX_PARTITIONS];
        int64_t from[MAX_PARTITIONS], to[MAX_PARTITIONS];
        size_t n = 0;
        int r;

        for (int32_t p = 0; p < MAX_PARTITIONS; p++) {
                if (f->touched[p]) {
                        parts[n] = p;
                        from[n] = f->first[p];
                        to[n++] = f->last[p] + 1;
                }
        }
        r = store_pipeline_begin(s->db);
        if (r < 0)
                return r;
        f->piped = true;
        r = store_begin(s->db);
        if (r == 0)
                r = scheduler_persist_batch(s);
        if (r == 0)
                r = advance_offsets(s, n, parts, from, to);
        if (r == 0)
                r = store_commit(s->db);
        store_pipeline_send(s->db);
        return r;
}

/*
 * Decides the batch in s->messages and sends its effects (batch_write);
 * batch_finish reads the answers. Nothing of the next batch is decided or
 * sent before: a batch's users, partitions and offsets are as the one
 * before it left them, committed or rolled back.
 */
static void batch_send(struct scheduler *s) {
        struct batch_flight *f = &s->flight;
        int r;

        if (s->n_messages == 0 || s->inflight)
                return;
        memset(f->touched, 0, sizeof(f->touched));
        f->processed = f->accepted = f->only = 0;
        f->ahead_us = 0;
        f->poll_us = s->poll_us;
        f->decode_us = clock_mono_us();
        f->piped = false;

        /*
         * Decide what follows PostgreSQL's offsets exactly: older messages
         * (after a re-seek) are done already, a held partition's are not
         * ours to read yet, and a gap means something was skipped.
         */
        for (size_t i = 0; i < s->n_messages; i++) {
                struct batch_report *b = &s->reports[i];
                int32_t p = bus_message_partition(s->messages[i]);
                int64_t off = bus_message_offset(s->messages[i]);
                struct partition_state *part;

                if (!b->decoded)
                        decode_message(s->messages[i], b);
                b->partition = p;
                b->offset = off;
                b->user = NULL;
                if (p < 0 || p >= MAX_PARTITIONS)
                        goto skip;
                part = &s->parts[p];
                if (!part->assigned || part->held || (part->stored && off < part->next))
                        goto skip;
                if (part->expect >= 0 && off != part->expect) {
                        log_warn("scheduler",
                                 "partition %d: offset %lld came where %lld was due; "
                                 "rewinding",
                                 p, (long long)off, (long long)part->expect);
                        hold_partition(s, p);
                        goto skip;
                }
                part->expect = off + 1;
                if (!f->touched[p])
                        f->first[p] = off;
                f->touched[p] = true;
                f->last[p] = off;
                f->accepted++;
                f->only = i;
                if (b->decoded < 0) {
                        /* The API validated it; a bad one here came from elsewhere. */
                        log_warn("scheduler",
                                 "partition %d offset %lld: not a location report; skipped", p,
                                 (long long)off);
                        s->tally_invalid++;
                }
                continue;
skip:
                b->report.user_id[0] = '\0'; /* not ours to decide */
        }
        if (f->accepted == 0) {
                batch_clear(s);
                return;
        }

        f->t[0] = clock_mono_us();
        f->decode_us = f->t[0] - f->decode_us;
        /* Before the transaction: read committed sees the same from outside it. */
        r = scheduler_load_users(s);
        f->t[1] = clock_mono_us();
        for (size_t i = 0; i < s->n_messages && r == 0; i++) {
                if (!s->reports[i].report.user_id[0])
                        continue;
                r = scheduler_decide_report(s, i);
                f->processed++;
        }
        f->t[2] = clock_mono_us();
        if (r == 0) {
                scheduler_batch_dedupe(s);
                r = batch_write(s);
        }
        f->t[3] = clock_mono_us();
        f->r = r;
        s->inflight = true;
}

/*
 * Reads the answers of the batch in flight: committed, its offsets are
 * PostgreSQL's and what was read ahead becomes the next batch; rolled back,
 * memory is forgotten, the partitions held to rewind, and what was read
 * ahead dropped. Without a batch in flight, only takes what was read ahead.
 */
static void batch_finish(struct scheduler *s) {
        struct batch_flight *f = &s->flight;
        int r;

        if (!s->inflight) {
                take_ahead(s, true);
                return;
        }
        s->inflight = false;
        r = f->r;
        if (f->piped) {
                int ended = store_pipeline_end(s->db);
                if (r == 0)
                        r = ended;
                scheduler_persist_done(s, r == 0);
        }
        f->t[4] = clock_mono_us();
        /* The split of a batch's time (scheduler/README.md, "Where a batch's time goes"). */
        log_debug("scheduler",
                  "batch of %zu: Kafka %lld us, decode %lld us, load %lld us, decide %lld us, "
                  "send %lld us, wait and commit %lld us (%zu read ahead meanwhile in %lld us)",
                  s->n_messages, (long long)f->poll_us, (long long)f->decode_us,
                  (long long)(f->t[1] - f->t[0]), (long long)(f->t[2] - f->t[1]),
                  (long long)(f->t[3] - f->t[2]), (long long)(f->t[4] - f->t[3]), s->n_ahead,
                  (long long)f->ahead_us);

        metrics_histogram_observe(s->m_batch_seconds, (size_t[]){ 0 } /* scheduler */,
                                  (double)(f->t[4] - f->t[0] - f->ahead_us) / 1e6);
        if (r == 0) {
                scheduler_count_batch(s, f->processed);
                s->reports_total += f->processed;
                for (int32_t p = 0; p < MAX_PARTITIONS; p++) {
                        if (f->touched[p]) {
                                s->parts[p].stored = true;
                                s->parts[p].next = f->last[p] + 1;
                        }
                }
                batch_clear(s);
                take_ahead(s, true);
                return;
        }

        store_rollback(s->db);
        metrics_counter_inc(s->m_rollbacks, (size_t[]){ r == -ESTALE ? 0 : 1 });
        if (r == -EIO) {
                /* The statement's own fault: find the report that causes it. */
                const struct batch_report *b = &s->reports[f->only];
                char error[400];
                snprintf(error, sizeof(error), "%s", store_error(s->db));
                if (f->accepted == 1 && s->parts[b->partition].isolate_through >= b->offset &&
                    quarantine(s, f->only, error) == 0) {
                        batch_clear(s);
                        take_ahead(s, true);
                        return;
                }
                for (int32_t q = 0; q < MAX_PARTITIONS; q++)
                        if (f->touched[q] && f->last[q] > s->parts[q].isolate_through)
                                s->parts[q].isolate_through = f->last[q];
                log_error("scheduler",
                          "batch of %zu reports rolled back (%s); "
                          "retrying them one at a time",
                          s->n_messages, error);
        } else if (r == -ESTALE) {
                log_warn("scheduler", "another scheduler advanced a partition first; "
                                      "re-reading offsets");
        } else {
                log_error("scheduler", "batch of %zu reports rolled back (%s); will retry",
                          s->n_messages, strerror(-r));
        }
        /* Memory ran ahead of what committed: forget it all, then re-read. */
        batch_clear(s);
        take_ahead(s, false);
        hold_partitions(s, r == -ESTALE || r == -EIO ? 0 : 200);
}

/*
 * While a batch's pipeline runs in PostgreSQL: the messages already there
 * (no waiting), up to a batch, decoded for the next one. Polling may run a
 * rebalance callback, which finishes the batch first; then this stops.
 */
static void read_ahead(struct scheduler *s, const atomic_bool *stop) {
        int64_t t0 = clock_mono_us();

        while (s->inflight && s->n_ahead < (size_t)s->cfg->batch_max && !atomic_load(stop)) {
                struct bus_message *m;
                if (bus_consumer_poll(s->consumer, 0, &m) != 1)
                        break;
                decode_message(m, &s->ahead_reports[s->n_ahead]);
                s->ahead[s->n_ahead++] = m;
        }
        s->flight.ahead_us = clock_mono_us() - t0;
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
        r = scheduler_register_metrics(&s, metrics);
        if (r < 0)
                goto out;
        s.messages = calloc((size_t)cfg->batch_max, sizeof(*s.messages));
        s.reports = calloc((size_t)cfg->batch_max, sizeof(*s.reports));
        s.ahead = calloc((size_t)cfg->batch_max, sizeof(*s.ahead));
        s.ahead_reports = calloc((size_t)cfg->batch_max, sizeof(*s.ahead_reports));
        s.devices = calloc((size_t)cfg->batch_max, sizeof(*s.devices));
        if (!s.messages || !s.reports || !s.ahead || !s.ahead_reports || !s.devices ||
            world_new(&s.world) < 0 || user_table_new(&s.users) < 0) {
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
        scheduler_forget_changed_users(&s);
        r = scheduler_upkeep_start(cfg, &s.upkeep);
        if (r < 0)
                goto out;
        r = bus_consumer_new(&(struct bus_cluster){ cfg->kafka_brokers, cfg->kafka_property,
                                                    cfg->kafka_properties_file },
                             cfg->consumer_group, cfg->topic_locations, &ops, &s, &s.consumer,
                             errbuf, sizeof(errbuf));
        if (r < 0) {
                log_error("scheduler", "cannot create the consumer: %s", errbuf);
                goto out;
        }
        log_info("scheduler", "consuming %s as group %s; %zu datacenters", cfg->topic_locations,
                 cfg->consumer_group, geo_index_count(world_context(s.world)->index));

        while (!atomic_load(stop)) {
                int64_t deadline = clock_mono_ms() + cfg->batch_wait_ms;
                size_t batch_max = isolating(&s) ? 1 : (size_t)cfg->batch_max;

                if (any_held(&s) && clock_mono_ms() >= s.next_rewind_ms &&
                    rewind_partitions(&s) < 0)
                        s.next_rewind_ms = clock_mono_ms() + 1000;

                if (time(NULL) - s.world_loaded_at >= cfg->catalog_refresh_s) {
                        /* Between batches: no decision holds a site index meanwhile.
                         * The rest of the periodic work runs beside (upkeep.c). */
                        int64_t t0 = clock_mono_us(), t1;
                        world_load(s.world, s.db);
                        t1 = clock_mono_us();
                        scheduler_forget_changed_users(&s);
                        s.world_loaded_at = time(NULL);
                        log_debug("scheduler", "catalog %lld us, changed users %lld us",
                                  (long long)(t1 - t0), (long long)(clock_mono_us() - t1));
                }
                s.poll_us = clock_mono_us();
                while (s.n_messages < batch_max && !atomic_load(stop)) {
                        struct bus_message *m;
                        int64_t left = deadline - clock_mono_ms();
                        r = bus_consumer_poll(s.consumer,
                                              s.n_messages ? (left > 0 ? left : 0) : 200, &m);
                        if (r == 1) {
                                s.reports[s.n_messages].decoded = 0;
                                s.messages[s.n_messages++] = m;
                        } else if (s.n_messages ? left <= 0 : true)
                                break;
                }
                s.poll_us = clock_mono_us() - s.poll_us;
                batch_send(&s);
                if (batch_max > 1)
                        read_ahead(&s, stop);
                batch_finish(&s);
                scheduler_update_lag(&s);
        }
        r = 0;
        log_info("scheduler",
                 "stopping: %lu reports, %lu moves, %lu dropped, %lu invalid, "
                 "%lu quarantined",
                 s.reports_total, s.moves_total, s.drops_total, s.invalid_total,
                 s.quarantined_total);
out:
        atomic_store(&consumer_assigned, false);
        s.upkeep = scheduler_upkeep_stop(s.upkeep);
        metrics_fn_detach(s.m_lag); /* `s` is about to go */
        batch_clear(&s);
        if (s.ahead)
                take_ahead(&s, false);
        s.consumer = bus_consumer_free(s.consumer); /* revokes: on_revoke commits nothing left */
        s.users = user_table_free(s.users);
        s.world = world_free(s.world);
        s.db = store_free(s.db);
        free(s.messages);
        free(s.reports);
        free(s.ahead);
        free(s.ahead_reports);
        free(s.devices);
        free(s.decisions);
        free(s.dirty);
        pthread_mutex_destroy(&s.lag_lock);
        return r;
}
