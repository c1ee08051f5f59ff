/*
 * The policy. A report moves a snapshot only when all of these hold: the
 * report is credible; a better eligible datacenter exists (active, with room
 * for the snapshot and, where the template is missing, the template; inside
 * the snapshot's zones; closer than the current one by both margins); the
 * user has dwelt near it long enough and often enough; the snapshot is not
 * cooling down nor at its daily limit; and the distance saved pays for the
 * bytes to send (only what a copy already at the target lacks, when there is
 * one). Otherwise it stays, and the reason says which rule held it.
 */
#include "scheduler/engine.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#define DAY_MS (24LL * 3600 * 1000)
#define GIB 1073741824.0

static const char *const reason_names[ENGINE_REASON_COUNT] = {
        [ENGINE_OK] = "ok",
        [ENGINE_CLOSER] = "closer",
        [ENGINE_ALREADY_NEAREST] = "already_nearest",
        [ENGINE_WITHIN_MARGIN] = "within_margin",
        [ENGINE_DWELL] = "dwell",
        [ENGINE_TRANSFER_PENDING] = "transfer_pending",
        [ENGINE_RETURNED] = "returned",
        [ENGINE_COOLDOWN] = "cooldown",
        [ENGINE_DAILY_LIMIT] = "daily_limit",
        [ENGINE_NOT_WORTH_IT] = "not_worth_it",
        [ENGINE_NO_ELIGIBLE_SITE] = "no_eligible_site",
        [ENGINE_ZONE] = "zone",
        [ENGINE_CAPACITY] = "capacity",
        [ENGINE_DRAINING] = "draining",
        [ENGINE_DOWN] = "down",
        [ENGINE_LOW_ACCURACY] = "low_accuracy",
        [ENGINE_STALE] = "stale",
        [ENGINE_DUPLICATE] = "duplicate",
        [ENGINE_IMPLAUSIBLE_SPEED] = "implausible_speed",
        [ENGINE_FUTURE] = "future",
};

const char *engine_reason_name(enum engine_reason reason) {
        return (unsigned)reason < ENGINE_REASON_COUNT ? reason_names[reason] : "unknown";
}

void engine_policy_defaults(struct engine_policy *p) {
        *p = (struct engine_policy){
                .max_accuracy_m = 2000,
                .max_speed_mps = 300, /* an airliner, with room */
                .max_future_skew_ms = 300 * 1000,
                .margin_m = 50000,
                .margin_ratio = 0.2,
                .dwell_ms = 30 * 60 * 1000LL,
                .min_reports = 3,
                .cooldown_ms = 6 * 3600 * 1000LL,
                .max_moves_per_day = 4,
                .km_per_gib = 5,
        };
}

enum engine_reason engine_check_report(const struct engine_policy *p, struct engine_device *device,
                                       double lat, double lon, double accuracy_m, int64_t ts_ms,
                                       int64_t received_ms) {
        if (!(accuracy_m <= p->max_accuracy_m))
                return ENGINE_LOW_ACCURACY;
        if (ts_ms > received_ms + p->max_future_skew_ms)
                return ENGINE_FUTURE;
        if (device->ts_ms != 0) {
                double seconds;
                if (ts_ms < device->ts_ms)
                        return ENGINE_STALE;
                if (ts_ms == device->ts_ms)
                        return ENGINE_DUPLICATE;
                seconds = (double)(ts_ms - device->ts_ms) / 1000.0;
                /* geo_distance_m(...) > limit, mostly without the geodesic */
                if (geo_distance_exceeds(device->lat, device->lon, lat, lon,
                                         p->max_speed_mps * seconds))
                        return ENGINE_IMPLAUSIBLE_SPEED;
        }
        device->ts_ms = ts_ms;
        device->lat = (float)lat;
        device->lon = (float)lon;
        return ENGINE_OK;
}

void engine_snapshot_init(struct engine_snapshot *s, uint32_t current, uint16_t template_index,
                          uint64_t size_bytes, uint16_t zone_set) {
        *s = (struct engine_snapshot){
                .current = current,
                .pending = ENGINE_NO_SITE,
                .candidate = ENGINE_NO_SITE,
                .template_index = template_index,
                .size_bytes = size_bytes,
                .copy_site = ENGINE_NO_SITE,
                .zone_set = zone_set,
        };
}

static bool template_at(const struct engine_context *ctx, const struct engine_snapshot *s,
                        size_t site) {
        const struct engine_template *t;
        if (s->template_index >= ctx->n_templates)
                return false;
        t = &ctx->templates[s->template_index];
        return t->replicas && site / 64 < t->n_words && (t->replicas[site / 64] >> (site % 64)) & 1;
}

static uint64_t template_bytes_to(const struct engine_context *ctx, const struct engine_snapshot *s,
                                  size_t site) {
        if (s->template_index >= ctx->n_templates || template_at(ctx, s, site))
                return 0;
        return ctx->templates[s->template_index].bytes;
}

/* What the site holds once the snapshot is there: the snapshot and the template. */
static uint64_t bytes_to(const struct engine_context *ctx, const struct engine_snapshot *s,
                         size_t site) {
        return s->size_bytes + template_bytes_to(ctx, s, site);
}

/* What a transfer to the site sends: as bytes_to, less what a copy there holds. */
static uint64_t sends_to(const struct engine_context *ctx, const struct engine_snapshot *s,
                         size_t site) {
        uint64_t snapshot = site == s->copy_site && s->copy_lacks_bytes < s->size_bytes
                                    ? s->copy_lacks_bytes
                                    : s->size_bytes;
        return snapshot + template_bytes_to(ctx, s, site);
}

struct room_check {
        const struct engine_context *ctx;
        const struct engine_snapshot *s;
};

/* A site has room when its free bytes hold the snapshot and, if missing, the template. */
static bool has_room(void *userdata, const geo_index *index, size_t site) {
        const struct room_check *check = userdata;
        geo_site info;
        if (site == check->s->current)
                return true; /* it is already there */
        return geo_index_site(index, site, &info) == 0 &&
               info.free_bytes >= bytes_to(check->ctx, check->s, site);
}

bool engine_site_allowed(const struct engine_context *ctx, uint16_t zone_set, uint32_t site) {
        const struct engine_zone_set *zones;

        if (zone_set >= ctx->n_zone_sets)
                return false;
        zones = &ctx->zone_sets[zone_set];
        for (size_t i = 0; i < zones->n; i++)
                if (geo_index_site_in_zone(ctx->index, site, zones->ids[i]) == 1)
                        return true;
        return zones->n == 0;
}

/* Why the nearest site of all is not the one chosen. */
static enum engine_reason why_not(const struct engine_context *ctx, const struct engine_snapshot *s,
                                  size_t site) {
        geo_site info;

        if (geo_index_site(ctx->index, site, &info) < 0)
                return ENGINE_NO_ELIGIBLE_SITE;
        if (info.status == GEO_SITE_DRAINING)
                return ENGINE_DRAINING;
        if (info.status == GEO_SITE_DOWN)
                return ENGINE_DOWN;
        if (s->zone_set < ctx->n_zone_sets &&
            !engine_site_allowed(ctx, s->zone_set, (uint32_t)site))
                return ENGINE_ZONE;
        return ENGINE_CAPACITY;
}

static double distance_to(const geo_index *index, uint32_t site, double lat, double lon) {
        geo_site info;
        if (site == ENGINE_NO_SITE || geo_index_site(index, site, &info) < 0)
                return INFINITY;
        return geo_distance_m(lat, lon, info.lat, info.lon);
}

/* Both margins: by more than margin_m, and by more than margin_ratio of the way. */
static bool beats_margins(const struct engine_policy *p, double current_m, double target_m) {
        if (isinf(current_m))
                return !isinf(target_m);
        return current_m - target_m > p->margin_m && target_m < current_m * (1.0 - p->margin_ratio);
}

static void stay(struct engine_decision *out, enum engine_reason reason) {
        out->outcome = ENGINE_STAY;
        out->reason = reason;
}

/*
 * Counts this report towards the user's stay near `site` (a new site starts
 * the count again). True once the stay is long enough, in time and in
 * reports; false after deciding to stay for the dwell.
 */
static bool dwelt(const struct engine_policy *p, struct engine_snapshot *s, uint32_t site,
                  int64_t ts_ms, struct engine_decision *out) {
        if (s->candidate != site) {
                s->candidate = site;
                s->candidate_since_ms = ts_ms;
                s->candidate_reports = 0;
        }
        s->candidate_reports++;
        out->dwell_ms = ts_ms - s->candidate_since_ms;
        out->dwell_reports = s->candidate_reports;
        if (out->dwell_ms < p->dwell_ms || s->candidate_reports < p->min_reports) {
                stay(out, ENGINE_DWELL);
                return false;
        }
        return true;
}

int engine_decide(const struct engine_policy *p, const struct engine_context *ctx,
                  struct engine_snapshot *s, double lat, double lon, int64_t ts_ms,
                  struct engine_decision *out) {
        const struct engine_zone_set *zones =
                s->zone_set < ctx->n_zone_sets ? &ctx->zone_sets[s->zone_set] : NULL;
        struct room_check check = { ctx, s };
        geo_filter eligible = {
                .statuses = GEO_STATUS_BIT(GEO_SITE_ACTIVE),
                .min_free_bytes = 0,
                .zones = zones ? zones->ids : NULL,
                .n_zones = zones ? zones->n : 0,
                .accept = has_room,
                .userdata = &check,
        };
        geo_hit any, best;
        int n_any, n_best;
        double gain_km, current_m;

        memset(out, 0, sizeof(*out));
        out->target = out->nearest = out->superseded = ENGINE_NO_SITE;
        out->target_m = INFINITY;

        n_any = geo_index_nearest(ctx->index, lat, lon, NULL, &any, 1);
        if (n_any < 0)
                return n_any;
        if (s->zone_set >= ctx->n_zone_sets) {
                n_best = -ENOENT;
        } else {
                /* Mostly the nearest of all is eligible, so the nearest eligible:
                 * the same answer without a second search. */
                n_best = n_any == 1 ? geo_index_site_eligible(ctx->index, any.site, &eligible) : 0;
                if (n_best == 1)
                        best = any;
                else if (n_best != -ENOENT)
                        n_best = geo_index_nearest(ctx->index, lat, lon, &eligible, &best, 1);
        }
        /* The distance of record, as a search computed it if it found the site. */
        if (n_any == 1 && any.site == s->current)
                current_m = any.distance_m;
        else if (n_best == 1 && best.site == s->current)
                current_m = best.distance_m;
        else
                current_m = distance_to(ctx->index, s->current, lat, lon);
        if (n_best == -ENOENT) {
                /* The snapshot names a zone the catalog does not have, or its set of
                 * zones could not be kept: nowhere qualifies. */
                out->current_m = current_m;
                s->candidate = ENGINE_NO_SITE;
                s->candidate_reports = 0;
                stay(out, ENGINE_ZONE);
                return 0;
        }
        if (n_best < 0)
                return n_best;

        out->current_m = current_m;
        if (n_any == 1)
                out->nearest = (uint32_t)any.site;
        if (n_best == 1) {
                out->target = (uint32_t)best.site;
                out->target_m = best.distance_m;
                out->bytes = bytes_to(ctx, s, best.site);
                out->send_bytes = sends_to(ctx, s, best.site);
                out->template_present = template_at(ctx, s, best.site);
                out->copy_present = best.site == s->copy_site;
        }

        /* Back near the current site while a move away is in flight: once the
         * user has stayed (the same dwell a move needs), the move is withdrawn. */
        if (n_best == 1 && out->target == s->current && s->pending != ENGINE_NO_SITE &&
            s->pending != s->current) {
                if (!dwelt(p, s, out->target, ts_ms, out))
                        return 0;
                stay(out, ENGINE_RETURNED);
                out->superseded = s->pending;
                s->pending = ENGINE_NO_SITE;
                s->candidate = ENGINE_NO_SITE;
                s->candidate_reports = 0;
                return 0;
        }

        /* No better eligible site: say what held back the nearest one, if anything. */
        if (n_best == 0 || out->target == s->current ||
            !beats_margins(p, out->current_m, out->target_m)) {
                s->candidate = ENGINE_NO_SITE;
                s->candidate_reports = 0;
                if (out->nearest != ENGINE_NO_SITE && out->nearest != out->target &&
                    out->nearest != s->current && beats_margins(p, out->current_m, any.distance_m))
                        stay(out, why_not(ctx, s, out->nearest));
                else if (n_best == 0)
                        stay(out, ENGINE_NO_ELIGIBLE_SITE);
                else if (out->target == s->current)
                        stay(out, ENGINE_ALREADY_NEAREST);
                else
                        stay(out, ENGINE_WITHIN_MARGIN);
                return 0;
        }

        /* The user must stay near the same better site for a while. */
        if (!dwelt(p, s, out->target, ts_ms, out))
                return 0;

        if (s->pending == out->target) {
                stay(out, ENGINE_TRANSFER_PENDING);
                return 0;
        }
        if (s->last_move_ms && ts_ms - s->last_move_ms < p->cooldown_ms) {
                stay(out, ENGINE_COOLDOWN);
                return 0;
        }
        if (s->window_start_ms && ts_ms - s->window_start_ms < DAY_MS &&
            s->window_moves >= p->max_moves_per_day) {
                stay(out, ENGINE_DAILY_LIMIT);
                return 0;
        }
        gain_km = isinf(out->current_m) ? INFINITY : (out->current_m - out->target_m) / 1000.0;
        if (gain_km < p->km_per_gib * ((double)out->send_bytes / GIB)) {
                stay(out, ENGINE_NOT_WORTH_IT);
                return 0;
        }

        out->outcome = ENGINE_MOVE;
        out->reason = ENGINE_CLOSER;
        out->superseded = s->pending;
        s->pending = out->target;
        s->last_move_ms = ts_ms;
        if (!s->window_start_ms || ts_ms - s->window_start_ms >= DAY_MS) {
                s->window_start_ms = ts_ms;
                s->window_moves = 0;
        }
        s->window_moves++;
        s->candidate = ENGINE_NO_SITE;
        s->candidate_reports = 0;
        return 0;
}

/* ---- pre-staging ---------------------------------------------------------- */

#define WEEK_MS (7 * DAY_MS)

void engine_prestage_defaults(struct engine_prestage_policy *pp) {
        *pp = (struct engine_prestage_policy){
                .bandwidth_bps = 12500000, /* 100 Mbit/s, as the replay's default */
                .lead_ms = 3600 * 1000LL,
                .linger_ms = DAY_MS,
                .near_m = 100000,
                .min_weeks = 2,
                .weeks = 4,
        };
}

int engine_prestage_decide(const struct engine_prestage_policy *pp,
                           const struct engine_context *ctx, const struct engine_snapshot *s,
                           const struct engine_trip *trip, int64_t last_near_ms, int64_t now_ms,
                           struct engine_prestage *out) {
        const struct engine_zone_set *zones =
                s->zone_set < ctx->n_zone_sets ? &ctx->zone_sets[s->zone_set] : NULL;
        struct room_check check = { ctx, s };
        geo_filter eligible = {
                .statuses = GEO_STATUS_BIT(GEO_SITE_ACTIVE),
                .zones = zones ? zones->ids : NULL,
                .n_zones = zones ? zones->n : 0,
                .accept = has_room,
                .userdata = &check,
        };
        int64_t from = trip->arrive_ms > last_near_ms ? trip->arrive_ms : last_near_ms;
        double takes_ms;
        geo_hit best;
        int n;

        *out = (struct engine_prestage){ .action = ENGINE_PRESTAGE_WAIT, .site = ENGINE_NO_SITE };
        out->end_ms = trip->return_ms ? trip->return_ms : from + pp->linger_ms;
        /* a zone set the context lacks allows nowhere */
        n = zones ? geo_index_nearest(ctx->index, trip->lat, trip->lon, &eligible, &best, 1) : 0;
        if (n < 0 && n != -ENOENT)
                return n;
        /* somewhere to go, and the snapshot is not (nor going) there already */
        if (n == 1 && best.site != s->current && best.site != s->pending) {
                out->site = (uint32_t)best.site;
                out->bytes = bytes_to(ctx, s, best.site);
                takes_ms = pp->bandwidth_bps > 0
                                   ? ceil((double)out->bytes / pp->bandwidth_bps * 1000.0)
                                   : INFINITY;
                out->stage_at_ms = takes_ms < 3.2e16
                                           ? trip->arrive_ms - (int64_t)takes_ms - pp->lead_ms
                                           : INT64_MIN;
        }
        if (now_ms >= out->end_ms)
                out->action = ENGINE_PRESTAGE_RELEASE;
        else if (out->site != ENGINE_NO_SITE && now_ms >= out->stage_at_ms)
                out->action = ENGINE_PRESTAGE_STAGE;
        return 0;
}

bool engine_prestage_serves(const struct engine_policy *p, const struct engine_context *ctx,
                            const struct engine_snapshot *s, const struct engine_trip *trip,
                            uint32_t site) {
        double target_m = distance_to(ctx->index, site, trip->lat, trip->lon);

        return !isinf(target_m) &&
               beats_margins(p, distance_to(ctx->index, s->current, trip->lat, trip->lon),
                             target_m);
}

static int64_t floor_div(int64_t a, int64_t b) {
        return a >= 0 ? a / b : -((-a + b - 1) / b);
}

int engine_recurring_trip(const struct engine_prestage_policy *pp,
                          const struct engine_visit *visits, size_t n, int64_t now_ms,
                          struct engine_trip *out) {
        int64_t oldest = now_ms - pp->weeks * WEEK_MS;
        bool found = false;

        for (size_t i = 0; i < n; i++) {
                const struct engine_visit *v = &visits[i], *latest = v;
                int64_t day = floor_div(v->ts_ms, DAY_MS), tod = v->ts_ms - day * DAY_MS;
                int64_t weeks_seen[64];
                size_t n_weeks = 0;
                bool first = true;

                if (v->ts_ms < oldest || v->ts_ms >= now_ms)
                        continue;
                /* every arrival at this site on this weekday: distinct weeks, earliest time */
                for (size_t j = 0; j < n; j++) {
                        const struct engine_visit *w = &visits[j];
                        int64_t wday = floor_div(w->ts_ms, DAY_MS), week;
                        bool seen = false;

                        if (w->site != v->site || w->ts_ms < oldest || w->ts_ms >= now_ms ||
                            (wday - day) % 7 != 0)
                                continue;
                        if (j < i) {
                                first = false; /* this site and weekday were looked at already */
                                break;
                        }
                        if (w->ts_ms - wday * DAY_MS < tod)
                                tod = w->ts_ms - wday * DAY_MS;
                        if (w->ts_ms > latest->ts_ms)
                                latest = w;
                        week = floor_div(wday, 7);
                        for (size_t k = 0; k < n_weeks; k++)
                                seen |= weeks_seen[k] == week;
                        if (!seen && n_weeks < 64)
                                weeks_seen[n_weeks++] = week;
                }
                if (!first || (int64_t)n_weeks < pp->min_weeks)
                        continue;
                {
                        /* the weekday's next occurrence whose time of day is still ahead */
                        int64_t next_day = day + 7 * ((floor_div(now_ms, DAY_MS) - day) / 7);
                        int64_t arrive = next_day * DAY_MS + tod;
                        while (arrive <= now_ms)
                                arrive += WEEK_MS;
                        if (!found || arrive < out->arrive_ms) {
                                *out = (struct engine_trip){ .lat = latest->lat,
                                                             .lon = latest->lon,
                                                             .arrive_ms = arrive };
                                found = true;
                        }
                }
        }
        return found ? 1 : 0;
}
