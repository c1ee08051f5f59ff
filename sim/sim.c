/*
 * The fleet simulator (sim.h). Each user gets a home and a workplace, trips
 * drawn as Poisson arrivals, and a phone whose reports are sampled along
 * the user's path; everything is gathered, ordered by delivery and handed
 * on. GSL draws the numbers (Mersenne Twister and its distributions), PROJ
 * places points at a distance, so a seed is a whole fleet.
 */
#include "sim/sim.h"

#include <errno.h>
#include <geodesic.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "geo/geo.h"

#define MIN_MS (60 * 1000LL)
#define HOUR_MS (60 * MIN_MS)
#define DAY_MS (24 * HOUR_MS)
#define EARTH_M 6371008.8
#define DEG (M_PI / 180)

/* Trips go to the most populous cities only: the gravity weights are
 * computed once per home city over these. */
#define DESTINATIONS_MAX 2000
/* Nearer than this is a commute or a drive, not a trip by air. */
#define TRIP_MIN_M 150000.0
#define USERS_MAX 10000000

void sim_params_defaults(struct sim_params *p) {
        *p = (struct sim_params){
                .seed = 1,
                .users = 10000,
                .days = 30,
                .start_ms = 1767571200000LL, /* Monday 2026-01-05T00:00:00Z */
                .stayer_share = 0.15,
                .night_off_share = 0.3,
                .report_interval_s = 3600,
                .business_trips_per_day = 1.0 / 20,
                .holidays_per_day = 1.0 / 120,
                .duplicate_share = 0.01,
                .late_share = 0.02,
                .commuter_share = 0.05,
                .announced_share = 0.5,
        };
}

enum trip_kind { BUSINESS, HOLIDAY, COMMUTE };

struct trip {
        int64_t depart_ms, return_ms, flight_ms;
        double lat, lon; /* where the user stays */
        enum trip_kind kind;
};

struct user {
        char id[16];
        double home_lat, home_lon, work_lat, work_lon;
        int utc_offset_h; /* solar: the cities carry no time zone */
        bool stayer, night_off;
        int64_t leave_ms; /* local time of day the commute starts */
        struct trip *trips;
        size_t n_trips;
        int64_t *gaps; /* pairs: from, to */
        size_t n_gaps;
};

/* An event, small: the report's ids are made from the user's index. */
struct record {
        int64_t received_ms, ts_ms;
        double lat, lon;
        float accuracy_m;
        uint32_t user;
        uint8_t kind;
        int64_t arrive_ms, return_ms; /* SIM_TRIP */
};

struct run {
        const struct sim_params *p;
        const struct sim_city *cities;
        size_t n_cities;
        gsl_rng *rng;
        /* Who commutes and which trips are announced draw from a stream of their
         * own: with both shares 0 a seed gives the fleet it gave before them. */
        gsl_rng *plans;
        struct geod_geodesic wgs84;
        gsl_ran_discrete_t *homes;
        size_t *destinations; /* the most populous cities, DESTINATIONS_MAX at most */
        size_t n_destinations;
        gsl_ran_discrete_t **gravity; /* by home city, made when first needed */
        bool *gravity_none;           /* by home city: no destination is far enough */
        struct record *records;
        size_t n_records, cap_records;
        struct sim_stats stats;
};

static double sphere_m(double lat1, double lon1, double lat2, double lon2) {
        double a = pow(sin((lat2 - lat1) * DEG / 2), 2) +
                   cos(lat1 * DEG) * cos(lat2 * DEG) * pow(sin((lon2 - lon1) * DEG / 2), 2);
        return 2 * EARTH_M * asin(fmin(1, sqrt(a)));
}

/* A point `metres` from (lat, lon) in a random direction. */
static void somewhere_near(struct run *r, double lat, double lon, double metres, double *out_lat,
                           double *out_lon) {
        geod_direct(&r->wgs84, lat, lon, gsl_rng_uniform(r->rng) * 360 - 180, metres, out_lat,
                    out_lon, NULL);
}

static int by_population(const void *a, const void *b, void *cities) {
        const struct sim_city *c = cities;
        uint32_t pa = c[*(const size_t *)a].population, pb = c[*(const size_t *)b].population;
        return (pa < pb) - (pa > pb);
}

static int pick_destinations(struct run *r) {
        size_t *all = malloc(r->n_cities * sizeof(*all));
        if (!all)
                return -ENOMEM;
        for (size_t i = 0; i < r->n_cities; i++)
                all[i] = i;
        qsort_r(all, r->n_cities, sizeof(*all), by_population, (void *)r->cities);
        r->n_destinations = r->n_cities < DESTINATIONS_MAX ? r->n_cities : DESTINATIONS_MAX;
        r->destinations = all;
        return 0;
}

/* Gravity: a city attracts trips from home in proportion to its population
 * over the square of its distance; nearer than TRIP_MIN_M, none. *out is
 * NULL when no city is far enough. */
static int gravity_from(struct run *r, size_t home, const gsl_ran_discrete_t **out) {
        const struct sim_city *h = &r->cities[home];
        double *weights;
        bool any = false;

        if (r->gravity[home] || r->gravity_none[home]) {
                *out = r->gravity[home];
                return 0;
        }
        weights = malloc(r->n_destinations * sizeof(*weights));
        if (!weights)
                return -ENOMEM;
        for (size_t k = 0; k < r->n_destinations; k++) {
                const struct sim_city *c = &r->cities[r->destinations[k]];
                double d = sphere_m(h->lat, h->lon, c->lat, c->lon);
                weights[k] = d < TRIP_MIN_M ? 0 : (double)c->population / (d / 1000 * d / 1000);
                any |= weights[k] > 0;
        }
        if (any)
                r->gravity[home] = gsl_ran_discrete_preproc(r->n_destinations, weights);
        free(weights);
        if (any && !r->gravity[home])
                return -ENOMEM;
        r->gravity_none[home] = !any;
        *out = r->gravity[home];
        return 0;
}

static int add_record(struct run *r, const struct record *rec) {
        if (r->n_records == r->cap_records) {
                size_t cap = r->cap_records ? r->cap_records * 2 : 1 << 16;
                struct record *grown = realloc(r->records, cap * sizeof(*grown));
                if (!grown)
                        return -ENOMEM;
                r->records = grown;
                r->cap_records = cap;
        }
        r->records[r->n_records++] = *rec;
        return 0;
}

static int64_t local_ms(const struct user *u, int64_t t) {
        return t + u->utc_offset_h * HOUR_MS;
}

/* Monday is 0: the epoch was a Thursday. */
static int weekday(int64_t local) {
        return (int)(((local / DAY_MS) % 7 + 7 + 3) % 7);
}

static int64_t time_of_day(int64_t local) {
        return ((local % DAY_MS) + DAY_MS) % DAY_MS;
}

static const struct trip *trip_at(const struct user *u, int64_t t) {
        for (size_t i = 0; i < u->n_trips; i++)
                if (t >= u->trips[i].depart_ms && t < u->trips[i].return_ms)
                        return &u->trips[i];
        return NULL;
}

/* Where the user is at t; false while in the air. */
static bool position_at(const struct user *u, int64_t t, double *lat, double *lon) {
        const struct trip *trip = trip_at(u, t);
        int64_t local = local_ms(u, t), day = time_of_day(local);

        if (trip) {
                if (t < trip->depart_ms + trip->flight_ms || t >= trip->return_ms - trip->flight_ms)
                        return false;
                *lat = trip->lat;
                *lon = trip->lon;
                return true;
        }
        if (!u->stayer && weekday(local) < 5 && day >= u->leave_ms &&
            day < u->leave_ms + 9 * HOUR_MS) {
                *lat = u->work_lat;
                *lon = u->work_lon;
        } else {
                *lat = u->home_lat;
                *lon = u->home_lon;
        }
        return true;
}

static bool phone_on(const struct user *u, int64_t t) {
        int64_t day = time_of_day(local_ms(u, t));
        if (u->night_off && (day >= 23 * HOUR_MS || day < 7 * HOUR_MS))
                return false;
        for (size_t i = 0; i < u->n_gaps; i++)
                if (t >= u->gaps[2 * i] && t < u->gaps[2 * i + 1])
                        return false;
        return true;
}

static int add_trip(struct user *u, const struct trip *t, size_t *cap) {
        if (u->n_trips == *cap) {
                struct trip *grown;
                *cap = *cap ? *cap * 2 : 4;
                grown = realloc(u->trips, *cap * sizeof(*grown));
                if (!grown)
                        return -ENOMEM;
                u->trips = grown;
        }
        u->trips[u->n_trips++] = *t;
        return 0;
}

/*
 * A weekly commuter: one city drawn by the gravity model, flown to every
 * Monday (leaving home at about 06:00 local) and back every Friday (leaving
 * there at about 17:00), the same pattern each week and nothing else.
 */
static int make_commutes(struct run *r, struct user *u, size_t home) {
        const struct sim_params *p = r->p;
        const gsl_ran_discrete_t *g;
        const struct sim_city *c;
        double lat, lon, km;
        int64_t flight_ms, leave_ms;
        size_t cap = 0;
        int e;

        if ((e = gravity_from(r, home, &g)) < 0)
                return e;
        if (!g)
                return 0;
        c = &r->cities[r->destinations[gsl_ran_discrete(r->plans, g)]];
        somewhere_near(r, c->lat, c->lon, gsl_ran_exponential(r->plans, 2000), &lat, &lon);
        km = sphere_m(u->home_lat, u->home_lon, c->lat, c->lon) / 1000;
        flight_ms = (int64_t)((1 + km / 800) * HOUR_MS);
        leave_ms = (int64_t)((6 + gsl_ran_gaussian(r->plans, 0.25)) * HOUR_MS);
        r->stats.commuters++;
        for (int day = 0; day < p->days; day++) {
                int64_t midnight = p->start_ms + day * DAY_MS - u->utc_offset_h * HOUR_MS;
                struct trip t = { .lat = lat, .lon = lon, .kind = COMMUTE, .flight_ms = flight_ms };
                if (weekday(local_ms(u, midnight)) != 0)
                        continue;
                t.depart_ms = midnight + leave_ms;
                /* Friday, 17:00 there (solar time of home: close enough), then the flight */
                t.return_ms = midnight + 4 * DAY_MS + 17 * HOUR_MS + flight_ms;
                if ((e = add_trip(u, &t, &cap)) < 0)
                        return e;
                r->stats.trips++;
                r->stats.commutes++;
                r->stats.trip_km_sum += km;
        }
        return 0;
}

/* Announced trips: a share of business trips, told 1 to 14 days before leaving. */
static int announce_trips(struct run *r, const struct user *u, uint32_t index) {
        for (size_t i = 0; i < u->n_trips; i++) {
                const struct trip *t = &u->trips[i];
                struct record rec;
                int64_t ahead;
                int e;

                if (t->kind != BUSINESS || !(gsl_rng_uniform(r->plans) < r->p->announced_share))
                        continue;
                ahead = (int64_t)((1 + 13 * gsl_rng_uniform(r->plans)) * DAY_MS);
                rec = (struct record){
                        .ts_ms = t->depart_ms - ahead,
                        .lat = t->lat,
                        .lon = t->lon,
                        .user = index,
                        .kind = SIM_TRIP,
                        .arrive_ms = t->depart_ms + t->flight_ms,
                        .return_ms = t->return_ms - t->flight_ms,
                };
                if (rec.ts_ms < r->p->start_ms)
                        rec.ts_ms = r->p->start_ms; /* booked before the month: told at its start */
                rec.received_ms = rec.ts_ms;
                if ((e = add_record(r, &rec)) < 0)
                        return e;
                r->stats.announced++;
        }
        return 0;
}

static int make_trips(struct run *r, struct user *u, size_t home) {
        const struct sim_params *p = r->p;
        int64_t end = p->start_ms + p->days * DAY_MS, free_from = p->start_ms;
        size_t cap = 0;

        for (int day = 0; day < p->days; day++) {
                for (int kind = BUSINESS; kind <= HOLIDAY; kind++) {
                        double rate =
                                kind == BUSINESS ? p->business_trips_per_day : p->holidays_per_day;
                        const gsl_ran_discrete_t *g;
                        const struct sim_city *c;
                        struct trip t;
                        double hours, km;
                        int e;

                        if (gsl_rng_uniform(r->rng) >= rate)
                                continue;
                        t.kind = (enum trip_kind)kind;
                        t.depart_ms = p->start_ms + day * DAY_MS - u->utc_offset_h * HOUR_MS +
                                      (int64_t)((6 + 12 * gsl_rng_uniform(r->rng)) * HOUR_MS);
                        if (t.depart_ms < free_from)
                                continue; /* still away, or just back */
                        if ((e = gravity_from(r, home, &g)) < 0)
                                return e;
                        if (!g)
                                return 0; /* nowhere far enough: the user never flies */
                        c = &r->cities[r->destinations[gsl_ran_discrete(r->rng, g)]];
                        /* Stays of hours to weeks: a business trip's median is 2.5
                         * days, a holiday's 8. */
                        hours = kind == BUSINESS ? gsl_ran_lognormal(r->rng, log(60), 0.6)
                                                 : gsl_ran_lognormal(r->rng, log(192), 0.4);
                        hours = fmin(fmax(hours, kind == BUSINESS ? 6 : 48), 28 * 24);
                        km = sphere_m(u->home_lat, u->home_lon, c->lat, c->lon) / 1000;
                        /* an hour at each end, then 800 km/h */
                        t.flight_ms = (int64_t)((1 + km / 800) * HOUR_MS);
                        t.return_ms = t.depart_ms + 2 * t.flight_ms + (int64_t)(hours * HOUR_MS);
                        somewhere_near(r, c->lat, c->lon, gsl_ran_exponential(r->rng, 2000), &t.lat,
                                       &t.lon);
                        if ((e = add_trip(u, &t, &cap)) < 0)
                                return e;
                        free_from = t.return_ms + DAY_MS;
                        r->stats.trips++;
                        if (kind == BUSINESS)
                                r->stats.business_trips++;
                        else
                                r->stats.holidays++;
                        r->stats.trip_km_sum += km;
                        if (free_from >= end)
                                return 0;
                }
        }
        return 0;
}

/* Phones are off now and then: about one day in twenty, for 2 to 12 hours. */
static int make_gaps(struct run *r, struct user *u) {
        const struct sim_params *p = r->p;
        for (int day = 0; day < p->days; day++) {
                int64_t *grown;
                int64_t from;
                if (gsl_rng_uniform(r->rng) >= 0.05)
                        continue;
                grown = realloc(u->gaps, (u->n_gaps + 1) * 2 * sizeof(*grown));
                if (!grown)
                        return -ENOMEM;
                u->gaps = grown;
                from = p->start_ms + day * DAY_MS + (int64_t)(gsl_rng_uniform(r->rng) * DAY_MS);
                u->gaps[2 * u->n_gaps] = from;
                u->gaps[2 * u->n_gaps + 1] =
                        from + (int64_t)((2 + 10 * gsl_rng_uniform(r->rng)) * HOUR_MS);
                u->n_gaps++;
        }
        return 0;
}

/* A fix from the phone: GPS most of the time, else Wi-Fi, else the cell. */
static int report_fix(struct run *r, uint32_t user, int64_t ts, double lat, double lon) {
        double pick = gsl_rng_uniform(r->rng), sigma, accuracy;
        struct record rec;
        int e;

        if (pick < 0.6) {
                sigma = 8;
                accuracy = 5 + 15 * gsl_rng_uniform(r->rng);
        } else if (pick < 0.9) {
                sigma = 40;
                accuracy = 30 + 70 * gsl_rng_uniform(r->rng);
        } else {
                sigma = 700;
                accuracy = 500 + 1500 * gsl_rng_uniform(r->rng);
        }
        rec = (struct record){
                .ts_ms = ts,
                .received_ms = ts + 200 + (int64_t)(1800 * gsl_rng_uniform(r->rng)),
                .lat = lat + gsl_ran_gaussian(r->rng, sigma) / 111320,
                .lon = lon + gsl_ran_gaussian(r->rng, sigma) / (111320 * cos(lat * DEG)),
                .accuracy_m = (float)(round(accuracy * 10) / 10),
                .user = user,
                .kind = SIM_REPORT,
        };
        rec.lon = rec.lon > 180 ? rec.lon - 360 : rec.lon < -180 ? rec.lon + 360 : rec.lon;
        rec.lat = fmax(-90, fmin(90, rec.lat));
        if (gsl_rng_uniform(r->rng) < r->p->late_share) {
                rec.received_ms += (int64_t)((1 + 29 * gsl_rng_uniform(r->rng)) * MIN_MS);
                r->stats.late++;
        }
        r->stats.reports++;
        if ((e = add_record(r, &rec)) < 0)
                return e;
        if (gsl_rng_uniform(r->rng) < r->p->duplicate_share) {
                rec.received_ms += 1000 + (int64_t)(59000 * gsl_rng_uniform(r->rng));
                r->stats.duplicates++;
                return add_record(r, &rec);
        }
        return 0;
}

static int sample_reports(struct run *r, const struct user *u, uint32_t index) {
        const struct sim_params *p = r->p;
        int64_t end = p->start_ms + p->days * DAY_MS;
        double lat, lon;
        int e;

        for (int64_t t = p->start_ms +
                         (int64_t)(gsl_ran_exponential(r->rng, p->report_interval_s) * 1000);
             t < end; t += (int64_t)(gsl_ran_exponential(r->rng, p->report_interval_s) * 1000) + 1)
                if (phone_on(u, t) && position_at(u, t, &lat, &lon) &&
                    (e = report_fix(r, index, t, lat, lon)) < 0)
                        return e;
        /* A phone reports soon after it lands. */
        for (size_t i = 0; i < u->n_trips; i++) {
                int64_t landed[2] = { u->trips[i].depart_ms + u->trips[i].flight_ms,
                                      u->trips[i].return_ms };
                for (int k = 0; k < 2; k++) {
                        int64_t t =
                                landed[k] + (int64_t)((5 + 25 * gsl_rng_uniform(r->rng)) * MIN_MS);
                        if (t < end && phone_on(u, t) && position_at(u, t, &lat, &lon) &&
                            (e = report_fix(r, index, t, lat, lon)) < 0)
                                return e;
                }
        }
        return 0;
}

/* Restores: most working days in the morning, local time; some weekends. */
static int sample_restores(struct run *r, const struct user *u, uint32_t index) {
        const struct sim_params *p = r->p;
        for (int day = 0; day < p->days; day++) {
                int64_t midnight = p->start_ms + day * DAY_MS - u->utc_offset_h * HOUR_MS;
                bool working = weekday(local_ms(u, midnight)) < 5;
                int64_t t = midnight + (int64_t)((working ? 8 + 2 * gsl_rng_uniform(r->rng)
                                                          : 10 + 10 * gsl_rng_uniform(r->rng)) *
                                                 HOUR_MS);
                struct record rec = {
                        .ts_ms = t, .received_ms = t, .user = index, .kind = SIM_RESTORE
                };
                int e;

                if (gsl_rng_uniform(r->rng) >= (working ? 0.8 : 0.25) || t < p->start_ms ||
                    !position_at(u, t, &rec.lat, &rec.lon))
                        continue;
                if ((e = add_record(r, &rec)) < 0)
                        return e;
                r->stats.restores++;
        }
        return 0;
}

static int make_user(struct run *r, uint32_t index) {
        struct user u = { 0 };
        size_t home = gsl_ran_discrete(r->rng, r->homes);
        const struct sim_city *c = &r->cities[home];
        bool commuter;
        int e;

        snprintf(u.id, sizeof(u.id), "u-%06u", index);
        somewhere_near(r, c->lat, c->lon, gsl_ran_exponential(r->rng, 3000), &u.home_lat,
                       &u.home_lon);
        somewhere_near(r, u.home_lat, u.home_lon, gsl_ran_lognormal(r->rng, log(8000), 0.6),
                       &u.work_lat, &u.work_lon);
        u.utc_offset_h = (int)lround(u.home_lon / 15);
        u.stayer = gsl_rng_uniform(r->rng) < r->p->stayer_share;
        u.night_off = gsl_rng_uniform(r->rng) < r->p->night_off_share;
        u.leave_ms = (int64_t)((8.5 + gsl_ran_gaussian(r->rng, 0.5)) * HOUR_MS);
        r->stats.stayers += u.stayer;
        commuter = !u.stayer && r->p->commuter_share > 0 &&
                   gsl_rng_uniform(r->plans) < r->p->commuter_share;
        e = u.stayer ? 0 : commuter ? make_commutes(r, &u, home) : make_trips(r, &u, home);
        if (e == 0 && r->p->announced_share > 0)
                e = announce_trips(r, &u, index);
        if (e == 0)
                e = make_gaps(r, &u);
        if (e == 0)
                e = sample_reports(r, &u, index);
        if (e == 0)
                e = sample_restores(r, &u, index);
        free(u.trips);
        free(u.gaps);
        return e;
}

static int by_delivery(const void *pa, const void *pb) {
        const struct record *a = pa, *b = pb;
        if (a->received_ms != b->received_ms)
                return a->received_ms < b->received_ms ? -1 : 1;
        return (a->user > b->user) - (a->user < b->user);
}

static int emit_all(struct run *r, sim_emit_fn emit, void *ctx) {
        qsort(r->records, r->n_records, sizeof(*r->records), by_delivery);
        for (size_t i = 0; i < r->n_records; i++) {
                const struct record *rec = &r->records[i];
                struct sim_event ev = { .kind = (enum sim_kind)rec->kind };
                int e;

                snprintf(ev.report.user_id, sizeof(ev.report.user_id), "u-%06u", rec->user);
                snprintf(ev.report.device_id, sizeof(ev.report.device_id), "d-%06u", rec->user);
                ev.report.lat = rec->lat;
                ev.report.lon = rec->lon;
                ev.report.accuracy_m = round((double)rec->accuracy_m * 10) / 10;
                ev.report.ts_ms = rec->ts_ms;
                ev.report.received_ms = rec->received_ms;
                ev.arrive_ms = rec->arrive_ms;
                ev.return_ms = rec->return_ms;
                if ((e = emit(ctx, &ev)) < 0)
                        return e;
        }
        return 0;
}

static bool params_valid(const struct sim_params *p, const struct sim_city *cities, size_t n) {
        if (n < 2 || p->users == 0 || p->users > USERS_MAX || p->days <= 0 || p->days > 3660 ||
            !(p->report_interval_s >= 1) || !(p->stayer_share >= 0 && p->stayer_share <= 1) ||
            !(p->night_off_share >= 0 && p->night_off_share <= 1) ||
            !(p->business_trips_per_day >= 0 && p->business_trips_per_day <= 1) ||
            !(p->holidays_per_day >= 0 && p->holidays_per_day <= 1) ||
            !(p->duplicate_share >= 0 && p->duplicate_share <= 1) ||
            !(p->late_share >= 0 && p->late_share <= 1) ||
            !(p->commuter_share >= 0 && p->commuter_share <= 1) ||
            !(p->announced_share >= 0 && p->announced_share <= 1))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!geo_point_valid(cities[i].lat, cities[i].lon) || cities[i].population == 0)
                        return false;
        return true;
}

int sim_run(const struct sim_params *p, const struct sim_city *cities, size_t n_cities,
            sim_emit_fn emit, void *ctx, struct sim_stats *stats) {
        struct run r = { .p = p, .cities = cities, .n_cities = n_cities };
        double *weights = NULL;
        int e = 0;

        if (!params_valid(p, cities, n_cities))
                return -EINVAL;
        geod_init(&r.wgs84, 6378137, 1 / 298.257223563);
        r.rng = gsl_rng_alloc(gsl_rng_mt19937);
        r.plans = gsl_rng_alloc(gsl_rng_mt19937);
        weights = malloc(n_cities * sizeof(*weights));
        r.gravity = calloc(n_cities, sizeof(*r.gravity));
        r.gravity_none = calloc(n_cities, sizeof(*r.gravity_none));
        if (!r.rng || !r.plans || !weights || !r.gravity || !r.gravity_none) {
                e = -ENOMEM;
                goto out;
        }
        gsl_rng_set(r.rng, (unsigned long)p->seed);
        gsl_rng_set(r.plans, (unsigned long)(p->seed ^ 0x9e3779b97f4a7c15ULL));
        for (size_t i = 0; i < n_cities; i++)
                weights[i] = cities[i].population;
        r.homes = gsl_ran_discrete_preproc(n_cities, weights);
        if (!r.homes || (e = pick_destinations(&r)) < 0) {
                e = e ? e : -ENOMEM;
                goto out;
        }
        r.stats.users = p->users;
        for (size_t i = 0; i < p->users && e == 0; i++)
                e = make_user(&r, (uint32_t)i);
        if (e == 0)
                e = emit_all(&r, emit, ctx);
        if (stats)
                *stats = r.stats;
out:
        for (size_t i = 0; r.gravity && i < n_cities; i++)
                if (r.gravity[i])
                        gsl_ran_discrete_free(r.gravity[i]);
        free(r.gravity);
        free(r.gravity_none);
        if (r.homes)
                gsl_ran_discrete_free(r.homes);
        free(r.destinations);
        free(r.records);
        free(weights);
        if (r.rng)
                gsl_rng_free(r.rng);
        if (r.plans)
                gsl_rng_free(r.plans);
        return e;
}

char *sim_event_json(const struct sim_event *event) {
        char ts[REPORT_TIME_LEN], *text;
        json_t *doc;

        if (event->kind == SIM_REPORT)
                return report_encode(&event->report);
        report_format_time(event->report.ts_ms, ts);
        if (event->kind == SIM_TRIP) {
                char arrive[REPORT_TIME_LEN], back[REPORT_TIME_LEN];
                report_format_time(event->arrive_ms, arrive);
                report_format_time(event->return_ms, back);
                doc = json_pack("{s:{s:s, s:s, s:s, s:f, s:f, s:s, s:s}}", "trip", "user_id",
                                event->report.user_id, "device_id", event->report.device_id,
                                "announced_at", ts, "lat", event->report.lat, "lon",
                                event->report.lon, "arrive_at", arrive, "return_at", back);
                text = doc ? json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
                json_decref(doc);
                return text;
        }
        doc = json_pack("{s:{s:s, s:s, s:f, s:f}}", "restore", "user_id", event->report.user_id,
                        "ts", ts, "lat", event->report.lat, "lon", event->report.lon);
        text = doc ? json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
        json_decref(doc);
        return text;
}
