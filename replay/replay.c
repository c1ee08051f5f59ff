/*
 * Policies side by side over one history. Every policy keeps its own state
 * for every user and device (the engine's struct engine_snapshot and
 * struct engine_device, as the scheduler keeps them), so one pass over the
 * events runs them all. Distances go into histograms of 1 % wide bins
 * (constant memory whatever the history's length; percentiles to within
 * 0.5 %, means exact).
 */
#include "replay/replay.h"

#include <errno.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"
#include "report/report.h"

#define DAY_MS (24LL * 3600 * 1000)
/* Bin 0 holds distances under a metre; bin k, [1.01^(k-1), 1.01^k) metres:
 * 1,800 bins reach past the antipode (20,004 km is bin 1,690). */
#define N_BINS 1800
#define BIN_BASE 1.01
#define REPLAY_MEMO 8
#define REPLAY_MAX_CHECKS 64 /* policies whose check is remembered for the next */
#define VISITS 16            /* a user's last arrivals, for recurring trips: 4 weeks of a commute */

struct hist {
        uint64_t bins[N_BINS];
        size_t n;
        double sum;
};

static void hist_add(struct hist *h, double m) {
        size_t k = 0;
        if (m >= 1.0) {
                k = (size_t)floor(log(m) / log(BIN_BASE)) + 1;
                if (k >= N_BINS)
                        k = N_BINS - 1;
        }
        h->bins[k]++;
        h->n++;
        h->sum += m;
}

/* The value of the bin where the share q of the distances is reached. */
static double hist_quantile(const struct hist *h, double q) {
        uint64_t want = (uint64_t)ceil(q * (double)h->n), seen = 0;
        if (want == 0)
                want = 1;
        for (size_t k = 0; k < N_BINS; k++) {
                seen += h->bins[k];
                if (seen >= want)
                        return k == 0 ? 0.0 : pow(BIN_BASE, (double)k - 0.5);
        }
        return 0.0;
}

static void hist_figures(const struct hist *h, struct replay_distances *out) {
        *out = (struct replay_distances){ .n = h->n };
        if (h->n == 0)
                return;
        out->mean_m = h->sum / (double)h->n;
        out->p50_m = hist_quantile(h, 0.50);
        out->p95_m = hist_quantile(h, 0.95);
        out->p99_m = hist_quantile(h, 0.99);
}

/* ---- ids to entries: open addressing, linear probing ------------------- */

struct table {
        char **keys; /* NULL: empty */
        void **values;
        size_t cap, n;
};

static void *table_find(const struct table *t, const char *key) {
        if (t->cap == 0)
                return NULL;
        for (size_t i = hash_fnv1a(key) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
                if (!t->keys[i])
                        return NULL;
                if (!strcmp(t->keys[i], key))
                        return t->values[i];
        }
}

static void table_place(struct table *t, char *key, void *value) {
        size_t i = hash_fnv1a(key) & (t->cap - 1);
        while (t->keys[i])
                i = (i + 1) & (t->cap - 1);
        t->keys[i] = key;
        t->values[i] = value;
        t->n++;
}

/* Adds key (taken) → value; the key must not be there. */
static int table_add(struct table *t, char *key, void *value) {
        if (2 * (t->n + 1) > t->cap) {
                struct table grown = { .cap = t->cap ? 2 * t->cap : 1024 };
                grown.keys = calloc(grown.cap, sizeof(*grown.keys));
                grown.values = calloc(grown.cap, sizeof(*grown.values));
                if (!grown.keys || !grown.values) {
                        free(grown.keys);
                        free(grown.values);
                        return -ENOMEM;
                }
                for (size_t i = 0; i < t->cap; i++)
                        if (t->keys[i])
                                table_place(&grown, t->keys[i], t->values[i]);
                free(t->keys);
                free(t->values);
                *t = grown;
        }
        table_place(t, key, value);
        return 0;
}

static void table_fini(struct table *t) {
        for (size_t i = 0; i < t->cap; i++) {
                free(t->keys[i]);
                free(t->values[i]);
        }
        free(t->keys);
        free(t->values);
        *t = (struct table){ 0 };
}

/* ---- the replay ---------------------------------------------------------- */

/* One user's snapshot under one policy. */
struct placement {
        struct engine_snapshot s;
        int64_t queued_ms, arrives_ms; /* the transfer to s.pending */
        uint64_t queued_bytes;
        uint32_t queued_from;
        uint32_t last_from; /* the site the last move left, and when it was decided */
        int64_t last_move_ms;
        /* pre-staging: the copy at `staged` for `trip`, complete at staged_ready_ms */
        uint32_t staged;
        struct engine_trip trip;
        int64_t staged_ready_ms, last_near_ms;
};

struct user {
        char *id; /* the table's key */
        uint32_t home;
        uint32_t last_site;                 /* the eligible site nearest the last credible report */
        int64_t last_event_ms;              /* the time of the user's last event */
        struct engine_visit visits[VISITS]; /* a ring of arrivals */
        size_t n_visits;
        struct placement p[]; /* one per policy */
};

/* A user's announced trips, when each was announced, and the pre-staging
 * policies (by index, bits) that have staged each. */
struct trip_list {
        struct engine_trip *v;
        int64_t *known_ms;
        uint64_t *done;
        size_t n, cap;
};

struct policy_state {
        struct replay_policy policy;
        size_t same_checks; /* the first policy with the same credibility rules (maybe itself) */
        struct hist restores, reports;
        size_t transfers, arrived, cancelled, flaps;
        uint64_t bytes;
        size_t prestaged, prestage_used;
        uint64_t prestage_bytes;
        uint32_t *at_site, *peak; /* snapshots held at each site, now and at most */
        uint32_t *daily;          /* transfers queued on each day from first_day */
        uint64_t *daily_bytes;    /* the bytes they sent, by the day they were queued */
        int64_t first_day;        /* days since 1970 */
        size_t n_days;
};

struct replay {
        const struct engine_context *ctx;
        struct replay_params params;
        struct policy_state *policies;
        size_t n_policies, n_sites;
        replay_event_fn on_event;
        void *event_ctx;
        struct table users, devices, trips;
        int64_t first_ms, last_ms; /* the span of the reports' timestamps */
        long prestager;            /* the first policy that pre-stages, or -1 */
};

void replay_naive(struct engine_policy *p) {
        p->margin_m = 0;
        p->margin_ratio = 0;
        p->dwell_ms = 0;
        p->min_reports = 1;
        p->cooldown_ms = 0;
        p->max_moves_per_day = INT32_MAX;
        p->km_per_gib = 0;
}

/* Policies with the same credibility rules judge every report alike: it is judged once. */
static bool same_credibility(const struct engine_policy *a, const struct engine_policy *b) {
        return a->max_accuracy_m == b->max_accuracy_m && a->max_speed_mps == b->max_speed_mps &&
               a->max_future_skew_ms == b->max_future_skew_ms;
}

int replay_new(const struct engine_context *ctx, const struct replay_params *params,
               const struct replay_policy *policies, size_t n_policies, replay_event_fn on_event,
               void *event_ctx, struct replay **out) {
        struct replay *r;

        if (n_policies == 0 || params->snapshot_bytes == 0 || !(params->bandwidth_bps > 0) ||
            !isfinite(params->bandwidth_bps))
                return -EINVAL;
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->ctx = ctx;
        r->params = *params;
        r->n_sites = geo_index_slots(ctx->index);
        r->on_event = on_event;
        r->event_ctx = event_ctx;
        r->policies = calloc(n_policies, sizeof(*r->policies));
        if (!r->policies) {
                free(r);
                return -ENOMEM;
        }
        r->n_policies = n_policies;
        r->prestager = -1;
        /* a pre-staged copy moves at the replay's bandwidth, as its transfers do */
        r->params.prestage.bandwidth_bps = params->bandwidth_bps;
        for (size_t i = 0; i < n_policies; i++) {
                struct policy_state *ps = &r->policies[i];
                ps->policy = policies[i];
                /* a trip remembers which policies staged it in 64 bits */
                ps->policy.prestage =
                        policies[i].prestage && policies[i].kind == REPLAY_ENGINE && i < 64;
                if (ps->policy.prestage && r->prestager < 0)
                        r->prestager = (long)i;
                ps->same_checks = i;
                for (size_t j = 0; j < i; j++)
                        if (same_credibility(&policies[j].engine, &policies[i].engine)) {
                                ps->same_checks = j;
                                break;
                        }
                ps->at_site = calloc(r->n_sites + 1, sizeof(*ps->at_site));
                ps->peak = calloc(r->n_sites + 1, sizeof(*ps->peak));
                if (!ps->at_site || !ps->peak) {
                        replay_free(r);
                        return -ENOMEM;
                }
        }
        *out = r;
        return 0;
}

struct replay *replay_free(struct replay *r) {
        if (!r)
                return NULL;
        for (size_t i = 0; i < r->n_policies; i++) {
                free(r->policies[i].at_site);
                free(r->policies[i].peak);
                free(r->policies[i].daily);
                free(r->policies[i].daily_bytes);
        }
        free(r->policies);
        for (size_t i = 0; i < r->trips.cap; i++)
                if (r->trips.values[i]) {
                        free(((struct trip_list *)r->trips.values[i])->v);
                        free(((struct trip_list *)r->trips.values[i])->known_ms);
                        free(((struct trip_list *)r->trips.values[i])->done);
                }
        table_fini(&r->users);
        table_fini(&r->devices);
        table_fini(&r->trips);
        free(r);
        return NULL;
}

/* The nearest site that could take the snapshot (active, with room), or ENGINE_NO_SITE. */
static uint32_t nearest_eligible(const struct replay *r, double lat, double lon) {
        geo_filter filter = { .statuses = GEO_STATUS_BIT(GEO_SITE_ACTIVE),
                              .min_free_bytes = r->params.snapshot_bytes };
        geo_hit hit;
        return geo_index_nearest(r->ctx->index, lat, lon, &filter, &hit, 1) == 1
                       ? (uint32_t)hit.site
                       : ENGINE_NO_SITE;
}

static double distance_to(const struct replay *r, uint32_t site, double lat, double lon) {
        geo_site info;
        if (site == ENGINE_NO_SITE || geo_index_site(r->ctx->index, site, &info) < 0)
                return INFINITY;
        return geo_distance_m(lat, lon, info.lat, info.lon);
}

/* The distances to sites measured for one event: policies often hold the same site. */
struct near_memo {
        size_t n;
        uint32_t site[REPLAY_MEMO];
        double m[REPLAY_MEMO];
};

static double memo_distance(const struct replay *r, struct near_memo *memo, uint32_t site,
                            double lat, double lon) {
        double m;
        for (size_t k = 0; k < memo->n; k++)
                if (memo->site[k] == site)
                        return memo->m[k];
        m = distance_to(r, site, lat, lon);
        if (memo->n < REPLAY_MEMO) {
                memo->site[memo->n] = site;
                memo->m[memo->n++] = m;
        }
        return m;
}

static void hold(struct policy_state *ps, uint32_t site, int delta) {
        if (site == ENGINE_NO_SITE)
                return;
        ps->at_site[site] += (uint32_t)delta;
        if (ps->at_site[site] > ps->peak[site])
                ps->peak[site] = ps->at_site[site];
}

static int64_t day_of(int64_t ts_ms) {
        return ts_ms >= 0 ? ts_ms / DAY_MS : -((-ts_ms + DAY_MS - 1) / DAY_MS);
}

/* Makes room for `day` in the daily counts (days before the first seen are put in
 * front). Returns 0 or -ENOMEM. */
static int day_room(struct policy_state *ps, int64_t day) {
        size_t before = 0, need;
        uint32_t *grown;
        uint64_t *grown_bytes;

        if (ps->n_days == 0)
                ps->first_day = day;
        if (day < ps->first_day)
                before = (size_t)(ps->first_day - day);
        need = day < ps->first_day                              ? ps->n_days + before
               : (size_t)(day - ps->first_day) + 1 > ps->n_days ? (size_t)(day - ps->first_day) + 1
                                                                : ps->n_days;
        if (need <= ps->n_days)
                return 0;
        grown = realloc(ps->daily, need * sizeof(*grown));
        if (!grown)
                return -ENOMEM;
        ps->daily = grown;
        grown_bytes = realloc(ps->daily_bytes, need * sizeof(*grown_bytes));
        if (!grown_bytes)
                return -ENOMEM; /* daily is larger than n_days says: harmless */
        ps->daily_bytes = grown_bytes;
        if (before) {
                memmove(grown + before, grown, ps->n_days * sizeof(*grown));
                memset(grown, 0, before * sizeof(*grown));
                memmove(grown_bytes + before, grown_bytes, ps->n_days * sizeof(*grown_bytes));
                memset(grown_bytes, 0, before * sizeof(*grown_bytes));
                ps->first_day = day;
        } else {
                memset(grown + ps->n_days, 0, (need - ps->n_days) * sizeof(*grown));
                memset(grown_bytes + ps->n_days, 0, (need - ps->n_days) * sizeof(*grown_bytes));
        }
        ps->n_days = need;
        return 0;
}

/* Counts bytes sent for a transfer queued at ts_ms on its UTC day, and the
 * transfer itself when it is a move (a pre-staged copy is not). Returns 0
 * or -ENOMEM. */
static int count_on_day(struct policy_state *ps, int64_t ts_ms, uint64_t bytes, bool move) {
        int64_t day = day_of(ts_ms);

        if (day_room(ps, day) < 0)
                return -ENOMEM;
        ps->daily[day - ps->first_day] += move;
        ps->daily_bytes[day - ps->first_day] += bytes;
        return 0;
}

/* Counts a move of `bytes` queued at ts_ms on its UTC day. Returns 0 or -ENOMEM. */
static int count_day(struct policy_state *ps, int64_t ts_ms, uint64_t bytes) {
        return count_on_day(ps, ts_ms, bytes, true);
}

static void emit(struct replay *r, const struct replay_event *e) {
        if (r->on_event)
                r->on_event(r->event_ctx, e);
}

/* Bytes a transfer queued at queued_ms has sent by ts_ms. */
static uint64_t sent_by(const struct replay *r, const struct placement *pl, uint64_t bytes,
                        int64_t ts_ms) {
        double sent = r->params.bandwidth_bps * (double)(ts_ms - pl->queued_ms) / 1000.0;
        return sent <= 0 ? 0 : sent >= (double)bytes ? bytes : (uint64_t)sent;
}

/* The transfer in flight arrives if its time has come. */
static void advance(struct replay *r, size_t i, struct user *u, int64_t ts_ms) {
        struct placement *pl = &u->p[i];
        struct policy_state *ps = &r->policies[i];

        if (pl->s.pending == ENGINE_NO_SITE || pl->arrives_ms > ts_ms)
                return;
        hold(ps, pl->s.current, -1);
        hold(ps, pl->s.pending, +1);
        ps->arrived++;
        emit(r, &(struct replay_event){ REPLAY_ARRIVED, i, u->id, pl->arrives_ms, pl->queued_from,
                                        pl->s.pending, pl->queued_bytes, 0, NULL });
        /* as homing_transfer_succeeded: the new placement is the active one */
        pl->s.current = pl->s.pending;
        pl->s.pending = ENGINE_NO_SITE;
}

/* The oracle's snapshot is wherever is nearest, at once: *site. Returns 0 or -ENOMEM. */
static int oracle_at(struct replay *r, size_t i, struct user *u, double lat, double lon,
                     int64_t ts_ms, uint32_t *site) {
        struct placement *pl = &u->p[i];
        struct policy_state *ps = &r->policies[i];
        uint32_t nearest = nearest_eligible(r, lat, lon);

        if (nearest != ENGINE_NO_SITE && nearest != pl->s.current) {
                if (count_day(ps, ts_ms, r->params.snapshot_bytes) < 0)
                        return -ENOMEM;
                hold(ps, pl->s.current, -1);
                hold(ps, nearest, +1);
                ps->transfers++;
                ps->arrived++;
                ps->bytes += r->params.snapshot_bytes;
                pl->s.current = nearest;
        }
        *site = pl->s.current;
        return 0;
}

static void cancel(struct replay *r, size_t i, struct user *u, uint32_t target, int64_t ts_ms,
                   const struct engine_decision *d) {
        struct placement *pl = &u->p[i];
        struct policy_state *ps = &r->policies[i];
        uint64_t sent = sent_by(r, pl, pl->queued_bytes, ts_ms);

        ps->cancelled++;
        /* counted in full when queued; only what it sent counts once it stops */
        ps->bytes -= pl->queued_bytes - sent;
        ps->daily_bytes[day_of(pl->queued_ms) - ps->first_day] -= pl->queued_bytes - sent;
        emit(r, &(struct replay_event){ REPLAY_CANCELLED, i, u->id, ts_ms, pl->queued_from, target,
                                        sent, 0, d });
}

static uint64_t delta_bytes(const struct replay *r) {
        double b = (double)r->params.snapshot_bytes * r->params.delta_share;
        return b <= 0                                  ? 0
               : b >= (double)r->params.snapshot_bytes ? r->params.snapshot_bytes
                                                       : (uint64_t)b;
}

static int decide(struct replay *r, size_t i, struct user *u, const struct report *rep) {
        struct placement *pl = &u->p[i];
        struct policy_state *ps = &r->policies[i];
        uint32_t pending = pl->s.pending, from = pl->s.current;
        struct engine_decision d;
        int64_t start_ms;
        double takes_ms;
        int err;

        /* A complete warm copy is the snapshot's copy at another site, as the live
         * scheduler loads a verified one: a move onto it is weighed at what it lacks. */
        pl->s.copy_site = ENGINE_NO_SITE;
        pl->s.copy_lacks_bytes = 0;
        if (ps->policy.prestage && pl->staged != ENGINE_NO_SITE &&
            pl->staged_ready_ms <= rep->ts_ms) {
                pl->s.copy_site = pl->staged;
                pl->s.copy_lacks_bytes = delta_bytes(r);
        }
        err = engine_decide(&ps->policy.engine, r->ctx, &pl->s, rep->lat, rep->lon, rep->ts_ms, &d);
        if (err < 0)
                return err;
        if (d.superseded != ENGINE_NO_SITE && pending != ENGINE_NO_SITE)
                cancel(r, i, u, pending, rep->ts_ms, &d);
        if (d.outcome != ENGINE_MOVE)
                return 0;
        start_ms = rep->ts_ms;
        if (ps->policy.prestage && pl->staged != ENGINE_NO_SITE && pl->staged == d.target) {
                /* the warm copy is there: only what changed since travels, once it is */
                d.bytes = delta_bytes(r);
                if (pl->staged_ready_ms > start_ms)
                        start_ms = pl->staged_ready_ms;
                pl->staged = ENGINE_NO_SITE;
                ps->prestage_used++;
        }
        if (count_day(ps, rep->ts_ms, d.bytes) < 0)
                return -ENOMEM;
        ps->transfers++;
        ps->bytes += d.bytes;
        if (pl->last_move_ms && rep->ts_ms - pl->last_move_ms < DAY_MS && d.target == pl->last_from)
                ps->flaps++;
        pl->last_from = from;
        pl->last_move_ms = rep->ts_ms;
        pl->queued_ms = rep->ts_ms;
        pl->queued_bytes = d.bytes;
        pl->queued_from = from;
        takes_ms = ceil((double)d.bytes / r->params.bandwidth_bps * 1000.0);
        /* beyond a million years (a bandwidth near 0): never, rather than an overflow */
        pl->arrives_ms = takes_ms < 3.2e16 ? start_ms + (int64_t)takes_ms : INT64_MAX;
        emit(r, &(struct replay_event){ REPLAY_QUEUED, i, u->id, rep->ts_ms, from, d.target,
                                        d.bytes, pl->arrives_ms, &d });
        return 0;
}

static struct user *user_add(struct replay *r, const char *id, double lat, double lon) {
        struct user *u = calloc(1, sizeof(*u) + r->n_policies * sizeof(u->p[0]));
        char *key = strdup(id);

        if (!u || !key || table_add(&r->users, key, u) < 0) {
                free(u);
                free(key);
                return NULL;
        }
        u->id = key;
        u->home = nearest_eligible(r, lat, lon);
        u->last_site = u->home;
        for (size_t i = 0; i < r->n_policies; i++) {
                engine_snapshot_init(&u->p[i].s, u->home, UINT16_MAX, r->params.snapshot_bytes, 0);
                u->p[i].last_from = ENGINE_NO_SITE;
                u->p[i].staged = ENGINE_NO_SITE;
                hold(&r->policies[i], u->home, +1);
        }
        return u;
}

/* A device's last fix under each policy. */
static struct engine_device *device_get(struct replay *r, const char *id) {
        struct engine_device *d = table_find(&r->devices, id);
        char *key;

        if (d)
                return d;
        d = calloc(r->n_policies, sizeof(struct engine_device));
        key = strdup(id);
        if (!d || !key || table_add(&r->devices, key, d) < 0) {
                free(d);
                free(key);
                return NULL;
        }
        return d;
}

/* ---- pre-staging ---------------------------------------------------------- */

int replay_trip(struct replay *r, const char *user_id, const struct engine_trip *trip,
                int64_t ts_ms) {
        struct trip_list *list = table_find(&r->trips, user_id);
        char *key;

        if (!geo_point_valid(trip->lat, trip->lon) ||
            (trip->return_ms && trip->return_ms <= trip->arrive_ms))
                return -EINVAL;
        if (!list) {
                list = calloc(1, sizeof(*list));
                key = strdup(user_id);
                if (!list || !key || table_add(&r->trips, key, list) < 0) {
                        free(list);
                        free(key);
                        return -ENOMEM;
                }
        }
        if (list->n == list->cap) {
                size_t cap = list->cap ? 2 * list->cap : 4;
                struct engine_trip *grown = realloc(list->v, cap * sizeof(*grown));
                int64_t *known;
                uint64_t *done;
                if (!grown)
                        return -ENOMEM;
                list->v = grown;
                known = realloc(list->known_ms, cap * sizeof(*known));
                if (!known)
                        return -ENOMEM;
                list->known_ms = known;
                done = realloc(list->done, cap * sizeof(*done));
                if (!done)
                        return -ENOMEM;
                list->done = done;
                list->cap = cap;
        }
        list->known_ms[list->n] = ts_ms;
        list->done[list->n] = 0;
        list->v[list->n++] = *trip;
        return 0;
}

/* A credible report of the user near another site than the last one's is an arrival. */
static int note_arrival(struct replay *r, struct user *u, const struct report *rep) {
        uint32_t site = nearest_eligible(r, rep->lat, rep->lon);

        if (site == ENGINE_NO_SITE || site == u->last_site)
                return 0;
        u->last_site = site;
        u->visits[u->n_visits % VISITS] =
                (struct engine_visit){ rep->ts_ms, site, (float)rep->lat, (float)rep->lon };
        u->n_visits++;
        return 0;
}

/*
 * The trip to stage for now: of the announced ones, the soonest that should be
 * staged; else the next recurring one. 1 and *out with *d and when it was
 * known (*known_ms: its announcement, or the user's previous event), or 0.
 */
static int next_trip(struct replay *r, struct user *u, size_t i, int64_t ts_ms,
                     struct engine_trip *out, struct engine_prestage *d, int64_t *known_ms) {
        struct trip_list *list = table_find(&r->trips, u->id);
        const struct engine_snapshot *s = &u->p[i].s;
        struct policy_state *ps = &r->policies[i];
        const uint64_t bit = 1ULL << i;
        struct engine_prestage got;
        size_t chosen = 0;
        bool found = false;
        int err;

        for (size_t k = 0; list && k < list->n; k++) {
                if (list->done[k] & bit)
                        continue;
                if ((err = engine_prestage_decide(&r->params.prestage, r->ctx, s, &list->v[k], 0,
                                                  ts_ms, &got)) < 0)
                        return err;
                if (got.action == ENGINE_PRESTAGE_RELEASE && got.site != ENGINE_NO_SITE &&
                    got.stage_at_ms < got.end_ms) {
                        /* due and over between two of the user's events: the scheduler
                         * would have made the copy, and dropped it unused */
                        list->done[k] |= bit;
                        ps->prestaged++;
                        ps->prestage_bytes += got.bytes;
                        ps->bytes += got.bytes;
                } else if (got.action == ENGINE_PRESTAGE_STAGE &&
                           (!found || list->v[k].arrive_ms < out->arrive_ms)) {
                        *out = list->v[k];
                        *d = got;
                        *known_ms = list->known_ms[k];
                        chosen = k;
                        found = true;
                }
        }
        if (found) {
                list->done[chosen] |= bit;
                return 1;
        }
        if (engine_recurring_trip(&r->params.prestage, u->visits,
                                  u->n_visits < VISITS ? u->n_visits : VISITS, ts_ms, out) == 1) {
                if ((err = engine_prestage_decide(&r->params.prestage, r->ctx, s, out, 0, ts_ms,
                                                  d)) < 0)
                        return err;
                *known_ms = u->last_event_ms;
                return d->action == ENGINE_PRESTAGE_STAGE;
        }
        return 0;
}

/* Policy i's pre-staged copy at ts_ms, the user at (lat, lon): kept, released, or made. */
static int prestage(struct replay *r, size_t i, struct user *u, double lat, double lon,
                    int64_t ts_ms) {
        struct placement *pl = &u->p[i];
        struct policy_state *ps = &r->policies[i];
        struct engine_prestage d;
        struct engine_trip trip;
        int64_t known_ms = 0, queued_ms;
        int err;

        if (pl->staged != ENGINE_NO_SITE) {
                if (distance_to(r, pl->staged, lat, lon) <= r->params.prestage.near_m)
                        pl->last_near_ms = ts_ms;
                if ((err = engine_prestage_decide(&r->params.prestage, r->ctx, &pl->s, &pl->trip,
                                                  pl->last_near_ms, ts_ms, &d)) < 0)
                        return err;
                if (d.action != ENGINE_PRESTAGE_RELEASE && d.site == pl->staged)
                        return 0;
                /* the trip is over, or the snapshot went there by itself */
                pl->staged = ENGINE_NO_SITE;
        }
        if ((err = next_trip(r, u, i, ts_ms, &trip, &d, &known_ms)) <= 0)
                return err;
        /* The replay meets a user at their events only; the scheduler stages on
         * its own clock: when due, or as soon as the trip is known. */
        queued_ms = d.stage_at_ms > known_ms ? d.stage_at_ms : known_ms;
        if (queued_ms > ts_ms)
                queued_ms = ts_ms;
        pl->staged = d.site;
        pl->trip = trip;
        pl->last_near_ms = 0;
        pl->staged_ready_ms =
                queued_ms + (int64_t)ceil((double)d.bytes / r->params.bandwidth_bps * 1000.0);
        if (count_on_day(ps, queued_ms, d.bytes, false) < 0)
                return -ENOMEM;
        ps->prestaged++;
        ps->prestage_bytes += d.bytes;
        ps->bytes += d.bytes;
        return 0;
}

/* A restore near a complete pre-staged copy opens it: the move it was staged for. */
static int restore_staged(struct replay *r, size_t i, struct user *u, double lat, double lon,
                          int64_t ts_ms, struct near_memo *memo) {
        struct placement *pl = &u->p[i];
        struct policy_state *ps = &r->policies[i];
        uint64_t bytes = delta_bytes(r);
        uint32_t from = pl->s.current;

        if (pl->staged == ENGINE_NO_SITE || pl->staged_ready_ms > ts_ms ||
            !(memo_distance(r, memo, pl->staged, lat, lon) <
              memo_distance(r, memo, pl->s.current, lat, lon)))
                return 0;
        if (pl->s.pending != ENGINE_NO_SITE) {
                cancel(r, i, u, pl->s.pending, ts_ms, NULL);
                pl->s.pending = ENGINE_NO_SITE;
        }
        if (count_day(ps, ts_ms, bytes) < 0)
                return -ENOMEM;
        hold(ps, from, -1);
        hold(ps, pl->staged, +1);
        ps->transfers++;
        ps->arrived++;
        ps->bytes += bytes;
        ps->prestage_used++;
        pl->queued_ms = ts_ms;
        pl->queued_bytes = bytes;
        pl->queued_from = from;
        pl->last_from = from;
        pl->last_move_ms = ts_ms;
        pl->s.current = pl->staged;
        pl->s.candidate = ENGINE_NO_SITE;
        pl->s.candidate_reports = 0;
        pl->s.last_move_ms = ts_ms;
        pl->staged = ENGINE_NO_SITE;
        emit(r, &(struct replay_event){ REPLAY_QUEUED, i, u->id, ts_ms, from, pl->s.current, bytes,
                                        ts_ms, NULL });
        emit(r, &(struct replay_event){ REPLAY_ARRIVED, i, u->id, ts_ms, from, pl->s.current, bytes,
                                        0, NULL });
        return 0;
}

int replay_report(struct replay *r, const struct report *rep) {
        struct user *u = table_find(&r->users, rep->user_id);
        struct engine_device *dev;
        struct near_memo memo = { 0 };
        enum engine_reason checked[REPLAY_MAX_CHECKS];

        if (!u && !(u = user_add(r, rep->user_id, rep->lat, rep->lon)))
                return -ENOMEM;
        if (!(dev = device_get(r, rep->device_id)))
                return -ENOMEM;
        if (r->first_ms == 0 || rep->ts_ms < r->first_ms)
                r->first_ms = rep->ts_ms;
        if (rep->ts_ms > r->last_ms)
                r->last_ms = rep->ts_ms;
        for (size_t i = 0; i < r->n_policies; i++) {
                struct policy_state *ps = &r->policies[i];
                struct placement *pl = &u->p[i];
                size_t same = ps->same_checks;
                enum engine_reason why;
                uint32_t site;
                int err;

                advance(r, i, u, rep->ts_ms);
                if (same < i && same < REPLAY_MAX_CHECKS) {
                        /* the same rules over the same reports: the same answer and device */
                        why = checked[same];
                        dev[i] = dev[same];
                } else {
                        why = engine_check_report(&ps->policy.engine, &dev[i], rep->lat, rep->lon,
                                                  rep->accuracy_m, rep->ts_ms, rep->received_ms);
                }
                if (i < REPLAY_MAX_CHECKS)
                        checked[i] = why;
                if (why != ENGINE_OK)
                        continue;
                site = pl->s.current;
                if (ps->policy.kind == REPLAY_ORACLE &&
                    (err = oracle_at(r, i, u, rep->lat, rep->lon, rep->ts_ms, &site)) < 0)
                        return err;
                if (site != ENGINE_NO_SITE)
                        hist_add(&ps->reports, memo_distance(r, &memo, site, rep->lat, rep->lon));
                if (ps->policy.kind == REPLAY_ENGINE && (err = decide(r, i, u, rep)) < 0)
                        return err;
                if (ps->policy.prestage &&
                    (err = prestage(r, i, u, rep->lat, rep->lon, rep->ts_ms)) < 0)
                        return err;
        }
        if (rep->ts_ms > u->last_event_ms)
                u->last_event_ms = rep->ts_ms;
        /* arrivals, for recurring trips: as the first pre-staging policy judged the report */
        if (r->prestager >= 0 && (size_t)r->prestager < REPLAY_MAX_CHECKS &&
            checked[r->prestager] == ENGINE_OK)
                return note_arrival(r, u, rep);
        return 0;
}

int replay_restore(struct replay *r, const char *user_id, double lat, double lon, int64_t ts_ms) {
        struct user *u = table_find(&r->users, user_id);
        struct near_memo memo = { 0 };

        if (!u)
                return 1;
        for (size_t i = 0; i < r->n_policies; i++) {
                struct policy_state *ps = &r->policies[i];
                uint32_t site;
                int err;

                advance(r, i, u, ts_ms);
                if (ps->policy.prestage &&
                    ((err = prestage(r, i, u, lat, lon, ts_ms)) < 0 ||
                     (err = restore_staged(r, i, u, lat, lon, ts_ms, &memo)) < 0))
                        return err;
                site = u->p[i].s.current;
                if (ps->policy.kind == REPLAY_ORACLE &&
                    (err = oracle_at(r, i, u, lat, lon, ts_ms, &site)) < 0)
                        return err;
                if (site != ENGINE_NO_SITE)
                        hist_add(&ps->restores, memo_distance(r, &memo, site, lat, lon));
        }
        if (ts_ms > u->last_event_ms)
                u->last_event_ms = ts_ms;
        return 0;
}

int replay_figures(const struct replay *r, size_t policy, struct replay_figures *out) {
        const struct policy_state *ps;

        if (policy >= r->n_policies)
                return -EINVAL;
        ps = &r->policies[policy];
        *out = (struct replay_figures){
                .transfers = ps->transfers,
                .arrived = ps->arrived,
                .cancelled = ps->cancelled,
                .flaps = ps->flaps,
                .bytes = ps->bytes,
                .peak_site = SIZE_MAX,
                .prestaged = ps->prestaged,
                .prestage_used = ps->prestage_used,
                .prestage_bytes = ps->prestage_bytes,
                .user_days =
                        (double)r->users.n * (double)(r->last_ms - r->first_ms) / (double)DAY_MS,
        };
        hist_figures(&ps->restores, &out->restores);
        hist_figures(&ps->reports, &out->reports);
        for (size_t s = 0; s < r->n_sites; s++)
                if (ps->peak[s] > out->peak_snapshots) {
                        out->peak_snapshots = ps->peak[s];
                        out->peak_site = s;
                }
        return 0;
}

size_t replay_site_peak(const struct replay *r, size_t policy, size_t site) {
        return policy < r->n_policies && site < r->n_sites ? r->policies[policy].peak[site] : 0;
}

size_t replay_daily(const struct replay *r, size_t policy, int64_t *first_day,
                    const uint32_t **transfers, const uint64_t **bytes) {
        const struct policy_state *ps;

        if (policy >= r->n_policies)
                return 0;
        ps = &r->policies[policy];
        *first_day = ps->first_day;
        *transfers = ps->daily;
        if (bytes)
                *bytes = ps->daily_bytes;
        return ps->n_days;
}

size_t replay_percentiles(const struct replay *r, size_t policy, bool at_restores,
                          double out_m[REPLAY_PERCENTILES]) {
        const struct hist *h;

        if (policy >= r->n_policies)
                return 0;
        h = at_restores ? &r->policies[policy].restores : &r->policies[policy].reports;
        if (h->n == 0)
                return 0;
        /* k / 100.0 is the same double as the figures' 0.50, 0.95, 0.99 */
        for (int k = 0; k < REPLAY_PERCENTILES; k++)
                out_m[k] = hist_quantile(h, k / 100.0);
        return h->n;
}

size_t replay_users(const struct replay *r) {
        return r->users.n;
}

void replay_pareto(const double *x, const double *y, size_t n, bool *front) {
        for (size_t i = 0; i < n; i++) {
                front[i] = true;
                for (size_t j = 0; j < n && front[i]; j++)
                        if (j != i && x[j] <= x[i] && y[j] <= y[i] && (x[j] < x[i] || y[j] < y[i]))
                                front[i] = false;
        }
}
