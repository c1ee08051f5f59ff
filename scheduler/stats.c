/*
 * What /metrics says of the scheduler: its metrics registered once, the
 * lag of each partition it holds, and a committed batch's tallies counted
 * (a batch rolled back counts nothing but the rollback).
 */
#include <stdio.h>
#include <string.h>

#include "base/config.h"
#include "base/log.h"
#include "bus/bus.h"
#include "metrics/metrics.h"
#include "scheduler/internal.h"

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

void scheduler_update_lag(struct scheduler *s) {
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

int scheduler_register_metrics(struct scheduler *s, struct metrics *m) {
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
            (r = metrics_counter_register(m, "homing_scheduler_reports_dropped_total",
                                          "Reports not credible enough to decide on, by why.",
                                          (const struct metrics_label[]){ { "reason", dropped },
                                                                          { NULL, NULL } },
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
                     metrics_buckets_request, METRICS_N_BUCKETS_REQUEST, &s->m_batch_seconds)) <
                    0 ||
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
                log_error("scheduler", "cannot register the scheduler's metrics: %s", strerror(-r));
        return r;
}

void scheduler_count_batch(struct scheduler *s, size_t processed) {
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
