/*
 * sim — a fleet of users who live, commute and travel, and the location
 * reports and restores their phones and desktops produce. Homes are drawn
 * from real cities by population, trips go by a gravity model (bigger and
 * nearer cities attract more), phones report with the noise of their fix
 * source, go quiet in flight, at night and now and then, and send some
 * reports twice or late. The same seed gives the same fleet. sim/README.md
 * describes the model and its settings.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "base/must-check.h"
#include "report/report.h"

struct sim_city {
        const char *name; /* borrowed */
        double lat, lon;
        uint32_t population;
};

struct sim_params {
        uint64_t seed;
        size_t users;
        int days;
        int64_t start_ms;              /* the first day's midnight, UTC */
        double stayer_share;           /* users who never leave home */
        double night_off_share;        /* users whose phone is off at night (23:00-07:00) */
        double report_interval_s;      /* mean time between a phone's reports while it is on */
        double business_trips_per_day; /* per travelling user */
        double holidays_per_day;
        double duplicate_share; /* reports sent twice */
        double late_share;      /* reports delivered minutes late, out of order */
        double commuter_share;  /* travelling users who fly to one other city every week */
        double announced_share; /* business trips the phone announces ahead (POST /v1/trips) */
};

/* The defaults README describes: 10,000 users, 30 days from 2026-01-05. */
void sim_params_defaults(struct sim_params *p);

enum sim_kind { SIM_REPORT, SIM_RESTORE, SIM_TRIP };

/* What the fleet produces, in the order it reaches homing. */
struct sim_event {
        enum sim_kind kind;
        /* a report as the API puts it on Kafka (received_ms: when it arrives);
         * a restore: user_id, where the user is (lat, lon) and when (ts_ms);
         * a trip announced: user_id, device_id, the destination (lat, lon),
         * when it is announced (ts_ms = received_ms) */
        struct report report;
        int64_t arrive_ms, return_ms; /* a trip's landing and its leaving the destination */
};

/* Figures a run can be checked against. */
struct sim_stats {
        size_t users, stayers, trips, business_trips, holidays;
        size_t commuters, commutes, announced; /* commutes count among trips */
        double trip_km_sum;
        size_t reports, duplicates, late, restores;
};

typedef int (*sim_emit_fn)(void *ctx, const struct sim_event *event);

/*
 * Runs the fleet over `cities` (at least two, each with a population) and
 * hands every event to emit in delivery order (a late report comes after
 * later ones). Returns 0, a negative errno (-EINVAL for bad params or
 * cities), or the first negative value emit returned. stats may be NULL.
 */
MUST_CHECK int sim_run(const struct sim_params *p, const struct sim_city *cities, size_t n_cities,
                       sim_emit_fn emit, void *ctx, struct sim_stats *stats);

/* Writes an event as one JSON line: a report exactly as the topic's record
 * (report_encode), a restore as {"restore": {"user_id", "ts", "lat", "lon"}},
 * a trip as {"trip": {"user_id", "device_id", "announced_at", "lat", "lon",
 * "arrive_at", "return_at"}}. Returns a malloc'd string, or NULL when out
 * of memory. */
char *sim_event_json(const struct sim_event *event);
