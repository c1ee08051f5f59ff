/*
 * /v1/trips: announced trips. A device posts its user's booked trip — the
 * destination, the arrival and, when known, the return — and may list and
 * withdraw them; it speaks for the user its token names only. Operators
 * read any user's trips and remove one (audited). A trip is checked as a
 * report is (degrees in range, RFC 3339 times, nothing stored on bad input)
 * and takes a token from the device's ingest bucket, so a device cannot
 * announce faster than it may report. The scheduler reads the table to
 * pre-stage (scheduler/prestage.c).
 */
#include "api/trips.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "api/audit.h"
#include "api/bucket.h"
#include "api/input.h"
#include "api/pool.h"
#include "api/reply.h"
#include "api/request.h"
#include "api/resource.h"
#include "api/state.h"
#include "auth/auth.h"
#include "base/clock.h"
#include "base/config.h"
#include "metrics/metrics.h"
#include "report/report.h"
#include "store/store.h"

#define DAY_MS (24LL * 3600 * 1000)
/* A trip under way may still be told; one booked more than a year ahead is a mistake. */
#define ARRIVE_PAST_MS DAY_MS
#define ARRIVE_AHEAD_MS (366 * DAY_MS)
#define STAY_MAX_MS (90 * DAY_MS)
/* Trips not yet over that one user may hold (the 50 in the insert). */
#define TRIPS_MAX 50

#define TRIP_JSON                                                                       \
        "json_build_object('id', t.id, 'user_id', t.user_id, 'device_id', t.device_id," \
        " 'lat', t.lat, 'lon', t.lon, 'arrive_at', homing_time(t.arrive_at),"           \
        " 'return_at', homing_time(t.return_at), 'created_at', homing_time(t.created_at))"
/* Over: returned, or (no return told) a week after landing. */
#define NOT_OVER "coalesce(t.return_at, t.arrive_at + interval '7 days') > now()"

const struct api_field api_trip_fields[] = {
        { "lat", FIELD_NUMBER, true, false, -90, 90 },
        { "lon", FIELD_NUMBER, true, false, -180, 180 },
        { "arrive_at", FIELD_STRING, true, false, 0, 0 },
        { "return_at", FIELD_STRING, false, true, 0, 0 },
        { NULL, 0, false, false, 0, 0 },
};

/* The times: RFC 3339, the arrival near enough, the return after it. */
bool api_trip_valid(struct request *req, enum MHD_Result *reply) {
        const char *arrive = json_string_value(json_object_get(req->input, "arrive_at"));
        const char *back = json_string_value(json_object_get(req->input, "return_at"));
        int64_t now = clock_wall_ms(), arrive_ms, back_ms;

        if (report_parse_time(arrive, &arrive_ms) < 0) {
                *reply = api_reply_invalid(req, "/arrive_at", "is not an RFC 3339 time");
                return false;
        }
        if (arrive_ms < now - ARRIVE_PAST_MS || arrive_ms > now + ARRIVE_AHEAD_MS) {
                *reply = api_reply_invalid(req, "/arrive_at",
                                           "must lie between a day ago and a year ahead");
                return false;
        }
        if (!back)
                return true;
        if (report_parse_time(back, &back_ms) < 0) {
                *reply = api_reply_invalid(req, "/return_at", "is not an RFC 3339 time");
                return false;
        }
        if (back_ms <= arrive_ms || back_ms - arrive_ms > STAY_MAX_MS) {
                *reply = api_reply_invalid(req, "/return_at",
                                           "must come after arrive_at, within 90 days");
                return false;
        }
        return true;
}

/* The device's bucket, shared with its reports: true, or false after 429. */
static bool take_token(struct request *req, enum MHD_Result *reply) {
        struct api *a = req->api;
        char seconds[24], detail[160];
        const char *const retry_after[] = { "Retry-After", seconds, NULL };
        double wait;

        if (!a->buckets)
                return true;
        wait = api_buckets_take(a->buckets, req->who.device.device_id, 1, metrics_now());
        if (wait <= 0)
                return true;
        snprintf(seconds, sizeof(seconds), "%ld", (long)ceil(wait));
        snprintf(detail, sizeof(detail),
                 "this device may send %g reports or trips a second; send it again in %s s",
                 a->cfg->ingest_rate_per_device, seconds);
        *reply = api_reply_problem_with(req, 429, "rate-limited",
                                        "Too many requests from this device", detail, NULL,
                                        retry_after);
        return false;
}

enum MHD_Result api_trips_create(struct request *req) {
        const struct auth_device_claims *c = &req->who.device;
        const json_t *back = json_object_get(req->input, "return_at");
        char lat[32], lon[32], location[64];
        struct store_result *res = NULL;
        enum MHD_Result ret;
        int r;

        if (!take_token(req, &ret))
                return ret;
        snprintf(lat, sizeof(lat), "%.17g", json_number_value(json_object_get(req->input, "lat")));
        snprintf(lon, sizeof(lon), "%.17g", json_number_value(json_object_get(req->input, "lon")));
        {
                const char *params[6] = {
                        c->user_id,
                        c->device_id,
                        lat,
                        lon,
                        json_string_value(json_object_get(req->input, "arrive_at")),
                        json_is_string(back) ? json_string_value(back) : NULL,
                };
                /* The cap and the insert in one statement: two requests at once cannot
                 * both pass it by much, and a user past it stores nothing. */
                r = api_fetch_one(
                        req,
                        "WITH n AS (SELECT count(*) AS held FROM trips t"
                        "           WHERE t.user_id = $1 AND " NOT_OVER "),"
                        " ins AS (INSERT INTO trips (user_id, device_id, lat, lon, arrive_at,"
                        "                            return_at)"
                        "         SELECT $1, $2, $3::float8, $4::float8, $5::timestamptz,"
                        "                $6::timestamptz FROM n WHERE n.held < 50"
                        "         RETURNING *)"
                        " SELECT t.id, " TRIP_JSON "::text FROM ins t",
                        6, params, &res);
        }
        if (r < 0)
                return api_reply_db_error(req);
        if (r == 0) {
                char detail[96];
                snprintf(detail, sizeof(detail), "a user holds at most %d trips not yet over",
                         TRIPS_MAX);
                return api_reply_conflict(req, "too-many-trips", detail);
        }
        snprintf(location, sizeof(location), "/v1/trips/%s", store_text(res, 0, 0));
        {
                const char *const headers[] = { "Location", location, NULL };
                ret = api_reply_raw(req, 201, store_text(res, 0, 1), headers);
        }
        store_result_free(res);
        return ret;
}

static enum MHD_Result list_of(struct request *req, const char *user) {
        const char *params[1] = { user };
        struct store_result *res = NULL;
        int r = api_fetch_one(req,
                              "SELECT coalesce(json_agg(" TRIP_JSON " ORDER BY t.arrive_at, t.id),"
                              " '[]')::text FROM trips t WHERE t.user_id = $1 AND " NOT_OVER,
                              1, params, &res);
        json_t *items;

        if (r < 0)
                return api_reply_db_error(req);
        items = json_loads(store_text(res, 0, 0), 0, NULL);
        store_result_free(res);
        if (!items)
                return MHD_NO;
        return api_reply_json(req, 200, json_pack("{s:o}", "items", items));
}

/* Trips are numbered; another id names none. */
static bool trip_id_valid(const char *id) {
        size_t n = strspn(id, "0123456789");
        return n > 0 && n <= 18 && !id[n];
}

static int delete_trip(struct request *req, const char *id, const char *user) {
        const char *params[2] = { id, user };
        struct store_result *res = NULL;
        int r;

        if (!trip_id_valid(id))
                return 0;
        r = api_fetch_one(req,
                          "DELETE FROM trips WHERE id = $1::bigint AND user_id = $2 RETURNING id",
                          2, params, &res);
        store_result_free(res);
        return r;
}

enum MHD_Result api_trips_list(struct request *req) {
        return list_of(req, req->who.device.user_id);
}

enum MHD_Result api_trips_delete(struct request *req) {
        const char *id = api_param(req, 0);
        int r = delete_trip(req, id, req->who.device.user_id);

        if (r <= 0)
                return api_reply_not_found_or_db_error(req, r, "trip", id);
        return api_reply_empty(req, 204);
}

enum MHD_Result api_user_trips_list(struct request *req) {
        if (!auth_id_valid(api_param(req, 0)))
                return api_reply_not_found(req, "user", api_param(req, 0));
        return list_of(req, api_param(req, 0));
}

enum MHD_Result api_user_trips_delete(struct request *req) {
        const char *user = api_param(req, 0), *id = api_param(req, 1);
        int r;

        if (api_begin(req) < 0)
                return api_reply_db_error(req);
        r = delete_trip(req, id, user);
        if (r <= 0)
                return api_reply_not_found_or_db_error(req, r, "trip", id);
        if (api_audit(req, "io.homing.trip.deleted", id,
                      json_pack("{s:s, s:s}", "trip_id", id, "user_id", user)) < 0 ||
            api_commit(req) < 0)
                return api_reply_db_error(req);
        return api_reply_empty(req, 204);
}
