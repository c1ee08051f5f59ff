/*
 * GET /v1/users/{id}/what-if?lat=..&lon=..[&ts=..]: what homing would decide
 * for each of the user's snapshots if the user reported from there, and
 * why — the scheduler's own engine over copies of the user's state; nothing
 * is written.
 */
#include "api/whatif.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "api/input.h"
#include "api/reply.h"
#include "api/request.h"
#include "api/state.h"
#include "base/clock.h"
#include "geo/geo.h"
#include "report/report.h"

enum MHD_Result api_users_what_if(struct request *req) {
        const char *ts_text = api_query(req, "ts");
        double lat, lon;
        int64_t ts_ms;
        char *json = NULL;
        enum MHD_Result ret;
        int r;

        if (!api_query_number(req, "lat", &lat) || !api_query_number(req, "lon", &lon) ||
            !geo_point_valid(lat, lon))
                return api_reply_problem(req, 400, "invalid-query", "Invalid query",
                                         "lat in [-90, 90] and lon in [-180, 180] are required",
                                         NULL);
        if (ts_text) {
                if (report_parse_time(ts_text, &ts_ms) < 0)
                        return api_reply_problem(req, 400, "invalid-query", "Invalid query",
                                                 "ts must be an RFC 3339 date-time", NULL);
        } else {
                ts_ms = clock_wall_ms();
        }
        if (!req->api->hooks.what_if)
                return api_reply_problem(req, 501, "not-implemented", "Not implemented",
                                         "this process was started without the scheduler's "
                                         "what-if",
                                         NULL);
        if (!req->db)
                return api_reply_db_error(req);

        r = req->api->hooks.what_if(req->api->cfg, req->db, req->params[0], lat, lon, ts_ms, &json);
        if (r == -ENOENT)
                return api_reply_not_found(req, "user with snapshots", req->params[0]);
        if (r < 0)
                return api_reply_db_error(req);
        ret = api_reply_raw(req, 200, json, NULL);
        free(json);
        return ret;
}
