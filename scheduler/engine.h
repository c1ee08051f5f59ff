/*
 * engine — the placement decision, as pure functions: given where a
 * snapshot is, what the catalog offers and where its user just was, stay or
 * move, and why. No I/O and no clock: time is the report's own timestamp, so
 * the same reports in the same order give the same decisions on any
 * scheduler, before or after a crash.
 *
 * A report first passes engine_check_report (is it credible?), then
 * engine_decide runs once for each snapshot of its user. Both update the
 * state they are given; the caller keeps that state and persists it with
 * the decision's effects.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "geo/geo.h"

#define ENGINE_NO_SITE UINT32_MAX

struct engine_policy {
        /* credibility */
        double max_accuracy_m;      /* a fix less precise than this is ignored */
        double max_speed_mps;       /* faster than this from the last fix: ignored */
        int64_t max_future_skew_ms; /* device clock ahead of the receiver by more: ignored */
        /* a better site */
        double margin_m;     /* closer than the current site by more than this... */
        double margin_ratio; /* ...and by more than this fraction of the current distance */
        /* the user stays */
        int64_t dwell_ms;    /* the same better site for at least this long... */
        int32_t min_reports; /* ...and this many reports */
        /* the snapshot rests */
        int64_t cooldown_ms;       /* between two moves of one snapshot */
        int32_t max_moves_per_day; /* in any 24 h window that starts with a move */
        /* worth it */
        double km_per_gib; /* every GiB to send must save this many km */
};

/* The defaults README documents. */
void engine_policy_defaults(struct engine_policy *p);

enum engine_outcome { ENGINE_STAY, ENGINE_MOVE, ENGINE_DROP };

enum engine_reason {
        ENGINE_OK = 0,
        /* moves */
        ENGINE_CLOSER,
        /* stays */
        ENGINE_ALREADY_NEAREST,
        ENGINE_WITHIN_MARGIN,
        ENGINE_DWELL,
        ENGINE_TRANSFER_PENDING,
        ENGINE_RETURNED, /* back near the current site: the move in flight is withdrawn */
        ENGINE_COOLDOWN,
        ENGINE_DAILY_LIMIT,
        ENGINE_NOT_WORTH_IT,
        ENGINE_NO_ELIGIBLE_SITE,
        ENGINE_ZONE,     /* the nearest site is outside the snapshot's zones */
        ENGINE_CAPACITY, /* the nearest site has no room */
        ENGINE_DRAINING, /* the nearest site is draining */
        ENGINE_DOWN,     /* the nearest site is down */
        /* dropped reports */
        ENGINE_LOW_ACCURACY,
        ENGINE_STALE,     /* older than the device's last report */
        ENGINE_DUPLICATE, /* as old as the device's last report */
        ENGINE_IMPLAUSIBLE_SPEED,
        ENGINE_FUTURE,
        ENGINE_REASON_COUNT
};

/* A stable lower-case word for logs, metrics and the API ("dwell"). */
const char *engine_reason_name(enum engine_reason reason);

/* A device's last credible fix; all zero before the first. */
struct engine_device {
        int64_t ts_ms;
        float lat, lon;
};

/*
 * Judges one report of a device. Returns ENGINE_OK and records the fix in
 * *device, or the reason to drop it (and *device is unchanged).
 */
enum engine_reason engine_check_report(const struct engine_policy *p, struct engine_device *device,
                                       double lat, double lon, double accuracy_m, int64_t ts_ms,
                                       int64_t received_ms);

/* What the policy knows and keeps about one snapshot (72 bytes: a
 * scheduler holds one for every snapshot of every user it tracks). */
struct engine_snapshot {
        uint32_t current;   /* site of the active placement, or ENGINE_NO_SITE */
        uint32_t pending;   /* target of the transfer in flight, or ENGINE_NO_SITE */
        uint32_t candidate; /* the better site the user is dwelling near */
        int32_t candidate_reports;
        int64_t candidate_since_ms;
        int64_t last_move_ms;    /* 0: never moved */
        int64_t window_start_ms; /* the 24 h window of max_moves_per_day */
        uint64_t size_bytes;
        /* A verified copy at another site (a pre-staged copy, a warm replica, a
         * cached older version): a move there sends only what it lacks,
         * copy_lacks_bytes (at most size_bytes). ENGINE_NO_SITE: none known.
         * Loaded, not kept: engine_snapshot_init clears it and engine_decide
         * never changes it. */
        uint64_t copy_lacks_bytes;
        uint32_t copy_site;
        uint16_t template_index; /* into engine_context.templates */
        uint16_t zone_set;       /* into engine_context.zone_sets; 0: anywhere */
        uint16_t window_moves;
};

/* Resets the policy fields of a snapshot held at `current`, with no copy elsewhere. */
void engine_snapshot_init(struct engine_snapshot *s, uint32_t current, uint16_t template_index,
                          uint64_t size_bytes, uint16_t zone_set);

struct engine_template {
        uint64_t bytes;
        const uint64_t *replicas; /* bitmap over site indexes; NULL: none */
        size_t n_words;           /* 64-bit words in the bitmap */
};

struct engine_zone_set {
        const char *const *ids;
        size_t n;
};

/* The world a decision is made in. Everything is borrowed. */
struct engine_context {
        const geo_index *index;
        const struct engine_template *templates;
        size_t n_templates;
        const struct engine_zone_set *zone_sets; /* [0] is "anywhere" */
        size_t n_zone_sets;
};

struct engine_decision {
        enum engine_outcome outcome;
        enum engine_reason reason;
        uint32_t target;       /* the nearest eligible site, or ENGINE_NO_SITE */
        uint32_t nearest;      /* the nearest site of any kind, or ENGINE_NO_SITE */
        double current_m;      /* report to the current site (INFINITY: none) */
        double target_m;       /* report to the target (INFINITY: none) */
        uint64_t bytes;        /* what a move to the target brings there: the snapshot and,
                                  if missing there, the template (reserved at the target) */
        uint64_t send_bytes;   /* what it sends: `bytes` less what a copy of the snapshot
                                  at the target holds already; what km_per_gib weighs */
        bool template_present; /* the target holds the template */
        bool copy_present;     /* the target holds a copy of the snapshot (copy_site) */
        uint32_t superseded;   /* the target of the transfer this decision cancels (a move
                                  replacing it, or a return withdrawing it), or ENGINE_NO_SITE */
        int64_t dwell_ms;      /* how long the user has been near the target */
        int32_t dwell_reports;
};

/*
 * Whether a snapshot restricted to `zone_set` may live at `site`: the set is
 * "anywhere", or the site lies in one of its zones. A set the context does
 * not have allows nowhere, as in engine_decide.
 */
bool engine_site_allowed(const struct engine_context *ctx, uint16_t zone_set, uint32_t site);

/*
 * Decides for one snapshot and a credible report at (lat, lon) taken at
 * ts_ms. Updates the snapshot's policy state (dwell, pending, cooldown).
 * Returns 0, or <0 when the index refuses the query (then nothing changed).
 */
int engine_decide(const struct engine_policy *p, const struct engine_context *ctx,
                  struct engine_snapshot *s, double lat, double lon, int64_t ts_ms,
                  struct engine_decision *out);

/* ---- pre-staging ---------------------------------------------------------
 *
 * A trip the user is expected to make — announced by their device (POST
 * /v1/trips) or found recurring in their history — gets a warm copy at the
 * eligible datacenter nearest its destination before the user lands, so
 * the move on arrival finds the snapshot there and sends only a delta; the
 * copy is released when the trip is over. Pure, like engine_decide: the
 * scheduler and the replay call the same functions.
 */

struct engine_trip {
        double lat, lon;   /* the destination */
        int64_t arrive_ms; /* when the user lands there */
        int64_t return_ms; /* when the user leaves it again; 0: not known */
};

struct engine_prestage_policy {
        double bandwidth_bps; /* what a replicate is assumed to move: its time = bytes ÷ this */
        int64_t lead_ms;      /* the copy is due this long before the arrival */
        int64_t linger_ms;    /* no return known: released this long after the arrival or the
                                 last report near the destination, whichever is later */
        double near_m;        /* a report this close to the destination's site is there */
        int32_t min_weeks;    /* recurring: arrivals at one site on one weekday (UTC) in at
                                 least this many distinct weeks... */
        int32_t weeks;        /* ...of the last this many */
};

/* The defaults README documents. */
void engine_prestage_defaults(struct engine_prestage_policy *pp);

enum engine_prestage_action {
        ENGINE_PRESTAGE_WAIT,    /* too early, or nothing to stage (there or going, no site) */
        ENGINE_PRESTAGE_STAGE,   /* a copy at `site` should exist now: queue its replicate */
        ENGINE_PRESTAGE_RELEASE, /* the trip is over: drop the pre-staged copy */
};

/* The site, bytes and stage_at_ms are filled whatever the action (site
 * ENGINE_NO_SITE when there is nowhere, or nothing, to stage). */

struct engine_prestage {
        enum engine_prestage_action action;
        uint32_t site;       /* the eligible site nearest the destination, or ENGINE_NO_SITE */
        uint64_t bytes;      /* what the replicate sends (the template too, if missing there) */
        int64_t stage_at_ms; /* when the replicate must start: arrival − its time − lead */
        int64_t end_ms;      /* when the trip is over */
};

/*
 * Decides for one snapshot and one trip at now_ms. last_near_ms is the last
 * report near the destination's site (0: none); it only matters when the
 * return is not known. Eligible sites are as engine_decide's (active, room,
 * zones). Returns 0, or <0 when the index refuses the query.
 */
int engine_prestage_decide(const struct engine_prestage_policy *pp,
                           const struct engine_context *ctx, const struct engine_snapshot *s,
                           const struct engine_trip *trip, int64_t last_near_ms, int64_t now_ms,
                           struct engine_prestage *out);

/*
 * Whether a copy at `site` would serve the trip: a report at the destination
 * finds the site nearer than the snapshot's current one by both of the
 * move's margins (engine_decide's), so the move on arrival goes there. The
 * live scheduler stages only such copies: the nearest site inside the zones
 * to a destination outside them may be no better than where the snapshot is.
 */
bool engine_prestage_serves(const struct engine_policy *p, const struct engine_context *ctx,
                            const struct engine_snapshot *s, const struct engine_trip *trip,
                            uint32_t site);

/* An arrival: the first credible report of the user near a site other than the last one's. */
struct engine_visit {
        int64_t ts_ms;
        uint32_t site;
        float lat, lon;
};

/*
 * The next recurring trip in a user's arrivals (any order), if any: a site
 * arrived at on the same weekday (UTC) in at least min_weeks distinct weeks
 * of the last `weeks` before now_ms. The trip lands at that weekday's next
 * occurrence after now_ms, at the earliest time of day seen, at the place
 * of the latest of those arrivals; its return is not known. Of several, the
 * soonest. Returns 1 and *out, or 0.
 */
int engine_recurring_trip(const struct engine_prestage_policy *pp,
                          const struct engine_visit *visits, size_t n, int64_t now_ms,
                          struct engine_trip *out);
