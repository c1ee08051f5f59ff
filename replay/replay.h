/*
 * replay — placement policies run over a recorded history, side by side:
 * the scheduler's own engine (engine_check_report, engine_decide) with any
 * settings, and the yardsticks it is measured against: the oracle (the
 * snapshot always at the nearest eligible datacenter, a lower bound) and a
 * fixed home (the datacenter nearest to where the user was first seen, what
 * disaster-recovery products do). Each user has one snapshot, which starts
 * at that home datacenter. A move queues a transfer that arrives after
 * size ÷ bandwidth: until then the snapshot is where it was. At every
 * restore the distance from the user to the datacenter holding the active
 * copy is measured. A policy that pre-stages also keeps a warm copy at the
 * destination of each trip the user's device announced, or that recurs in
 * the user's arrivals (engine_prestage_decide, engine_recurring_trip):
 * moving onto it, or opening it at a restore there, sends only a delta.
 * No I/O and no clock: time is the events' own.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/must-check.h"
#include "scheduler/engine.h"

struct report;
struct replay;

enum replay_kind {
        REPLAY_ENGINE, /* the engine with `engine` as its policy */
        REPLAY_ORACLE, /* always at the nearest eligible site, moved instantly */
        REPLAY_HOME,   /* never leaves the site nearest the user's first report */
};

struct replay_policy {
        const char *name; /* borrowed; must outlive the replay */
        enum replay_kind kind;
        struct engine_policy
                engine; /* REPLAY_ENGINE's policy; the others use its credibility rules */
        bool prestage;  /* REPLAY_ENGINE: pre-stage, as replay_params.prestage says */
};

/* Turns `p` into the naive policy: any nearer site, at once (no margin, no
 * dwell, no cooldown, no daily limit, no cost), keeping its credibility rules. */
void replay_naive(struct engine_policy *p);

struct replay_params {
        uint64_t snapshot_bytes; /* every user's snapshot */
        double bandwidth_bps;    /* bytes per second a transfer moves */
        /* the policies that pre-stage: when and for how long (its bandwidth_bps is
         * the replay's), and what moving onto a pre-staged copy sends, as a share of
         * the snapshot (the changes since its replicate; 0: nothing) */
        struct engine_prestage_policy prestage;
        double delta_share;
};

/* A snapshot's transfer, as the replay runs it. */
enum replay_event_kind {
        REPLAY_QUEUED,    /* a move decided: a transfer starts */
        REPLAY_ARRIVED,   /* the copy is complete: the placement flips */
        REPLAY_CANCELLED, /* superseded by another move, or withdrawn (the user returned) */
};

struct replay_event {
        enum replay_event_kind kind;
        size_t policy;
        const char *user_id;                    /* borrowed for the call */
        int64_t ts_ms;                          /* when it happened */
        uint32_t from, to;                      /* sites (engine_context's index) */
        uint64_t bytes;                         /* sent (for a cancel: before it stopped) */
        int64_t arrives_ms;                     /* QUEUED: when it will arrive */
        const struct engine_decision *decision; /* QUEUED, a cancel; borrowed for the call */
};

typedef void (*replay_event_fn)(void *ctx, const struct replay_event *event);

/*
 * A replay of `policies` (copied; their names borrowed) in `ctx`'s catalog
 * (borrowed: it must outlive the replay). on_event, if not NULL, hears
 * every transfer queued, arrived and cancelled. Returns 0, -EINVAL for no
 * policy, a zero size or a bandwidth that is not positive, -ENOMEM.
 */
MUST_CHECK int replay_new(const struct engine_context *ctx, const struct replay_params *params,
                          const struct replay_policy *policies, size_t n_policies,
                          replay_event_fn on_event, void *event_ctx, struct replay **out);
struct replay *replay_free(struct replay *r);

/* A location report as the topic has it. Returns 0, or a negative errno. */
MUST_CHECK int replay_report(struct replay *r, const struct report *report);

/* A trip the user's device announced at ts_ms (POST /v1/trips): the
 * policies that pre-stage plan for it from then on. Returns 0, -EINVAL for
 * a destination that is not a point or a return not after the arrival, or
 * -ENOMEM. */
MUST_CHECK int replay_trip(struct replay *r, const char *user_id, const struct engine_trip *trip,
                           int64_t ts_ms);

/* A user opens their desktop at (lat, lon): every policy's restore
 * distance is measured. A user never seen before has no snapshot: ignored
 * (returns 1). Returns 0, 1 or a negative errno. */
MUST_CHECK int replay_restore(struct replay *r, const char *user_id, double lat, double lon,
                              int64_t ts_ms);

/* Distances: mean and percentiles, in metres. */
struct replay_distances {
        size_t n;
        double mean_m, p50_m, p95_m, p99_m;
};

struct replay_figures {
        struct replay_distances restores; /* at every restore */
        struct replay_distances reports;  /* at every credible report, before it is decided */
        size_t transfers;                 /* moves queued */
        size_t arrived, cancelled;
        size_t flaps;     /* moves back to the site a move within the last 24 h left */
        uint64_t bytes;   /* sent: in full unless cancelled, a cancelled one what it sent */
        size_t peak_site; /* the site that held most snapshots at once (SIZE_MAX: none) */
        size_t peak_snapshots;
        double user_days; /* users × days the history spans */
        /* pre-staging: copies made, those the active copy moved onto (on arrival or
         * at a restore), and the bytes their replicates sent, used or not (in `bytes`
         * too) */
        size_t prestaged, prestage_used;
        uint64_t prestage_bytes;
};

/* The figures of policy i so far. Returns 0, or -EINVAL for no such policy. */
MUST_CHECK int replay_figures(const struct replay *r, size_t policy, struct replay_figures *out);

/* Snapshots `site` held at most at once under the policy (0: no such site or policy). */
size_t replay_site_peak(const struct replay *r, size_t policy, size_t site);

/*
 * Transfers the policy queued on each UTC day and the bytes they sent (a
 * cancelled one what it sent by then, on the day it was queued): returns
 * the number of days, with the first (days since 1970) in *first_day and
 * the counts in *transfers and, if bytes is not NULL, *bytes (borrowed,
 * valid until the next event). 0 when it queued none.
 */
size_t replay_daily(const struct replay *r, size_t policy, int64_t *first_day,
                    const uint32_t **transfers, const uint64_t **bytes);

#define REPLAY_PERCENTILES 101

/*
 * The 0th to the 100th percentile of the policy's distances (at restores,
 * or at credible reports), in metres, as the figures' p50, p95 and p99 are
 * (the same bins: out_m[50] is p50_m). Returns how many distances there
 * are; 0 (out_m untouched) for none or no such policy.
 */
size_t replay_percentiles(const struct replay *r, size_t policy, bool at_restores,
                          double out_m[REPLAY_PERCENTILES]);

size_t replay_users(const struct replay *r);

/*
 * Marks front[i] true when point i (x[i], y[i]), both smaller-is-better, is
 * not dominated by another (no other is as good in both and better in one).
 */
void replay_pareto(const double *x, const double *y, size_t n, bool *front);
