/*
 * Deciding a batch in memory: each credible report runs the engine for each
 * of its user's snapshots, and what must be written — the device's fix, the
 * decisions worth recording, the snapshots whose policy state changed — is
 * gathered in the batch, then cut to one entry per device and per snapshot.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/metrics.h"
#include "scheduler/internal.h"
#include "scheduler/world.h"

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
        s->decisions[s->n_decisions++] = (struct decision_record){ u, snap, report, *d, NULL };
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

/* Whether deciding changed what snapshot_policy_state keeps (field by field:
 * a struct's padding is not part of its value). */
static bool policy_state_changed(const struct engine_snapshot *a, const struct engine_snapshot *b) {
        return a->current != b->current || a->pending != b->pending ||
               a->candidate != b->candidate || a->candidate_reports != b->candidate_reports ||
               a->candidate_since_ms != b->candidate_since_ms ||
               a->last_move_ms != b->last_move_ms || a->window_start_ms != b->window_start_ms ||
               a->window_moves != b->window_moves;
}

int scheduler_decide_report(struct scheduler *s, size_t i) {
        struct batch_report *b = &s->reports[i];
        const struct report *rep = &b->report;
        struct tracked_user *u = user_table_find(s->users, rep->user_id);
        struct tracked_snapshot *snaps;
        enum engine_reason verdict;
        int device, r = 0;

        if (!u)
                return -ENOENT; /* scheduler_load_users put every user of the batch in memory */
        b->user = u;
        device = user_device(u, rep->device_id);
        if (device < 0)
                return device;
        verdict = engine_check_report(&s->policy, &user_devices(u)[device].fix, rep->lat, rep->lon,
                                      rep->accuracy_m, rep->ts_ms, rep->received_ms);
        if (verdict != ENGINE_OK) {
                s->drops[verdict]++;
                return 0;
        }
        s->devices[s->n_devices] = (struct device_update){ u,
                                                           user_devices(u)[device].id,
                                                           (uint16_t)device,
                                                           (uint32_t)s->n_devices,
                                                           rep->lat,
                                                           rep->lon,
                                                           rep->accuracy_m,
                                                           rep->ts_ms,
                                                           rep->received_ms,
                                                           b->lat_text,
                                                           b->lon_text,
                                                           b->accuracy_text };
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
                /* withdrawals count as stays, reason returned */
                s->tally_superseded += d.outcome == ENGINE_MOVE && d.superseded != ENGINE_NO_SITE;
                if (d.outcome == ENGINE_MOVE || d.superseded != ENGINE_NO_SITE ||
                    d.reason != snap->last_reason || d.outcome != snap->last_outcome) {
                        r = note_decision(s, u, k, i, &d);
                        snap->last_reason = (uint8_t)d.reason;
                        snap->last_outcome = (uint8_t)d.outcome;
                        if (r == 0)
                                r = mark_dirty(s, u, k);
                } else if (policy_state_changed(&before, &snap->policy)) {
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

void scheduler_batch_dedupe(struct scheduler *s) {
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
