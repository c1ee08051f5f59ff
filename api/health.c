/*
 * The small routes: health and readiness (public, for probes), Prometheus
 * metrics, the dashboard's numbers (/v1/stats), who a token is (/v1/me),
 * and the OpenAPI document.
 */
#include "api/health.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/audit.h"
#include "api/pool.h"
#include "api/ready.h"
#include "api/reply.h"
#include "api/request.h"
#include "api/state.h"
#include "base/config.h"
#include "bus/bus.h"
#include "metrics/metrics.h"
#include "store/store.h"

enum MHD_Result api_healthz(struct request *req) {
        return api_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

/* From the background check (ready.c): never waits on PostgreSQL or Kafka. */
enum MHD_Result api_readyz(struct request *req) {
        struct api_readiness r;
        double age = api_ready_get(req->api, &r);
        bool fresh = r.checked && age <= API_READY_STALE_S;
        const char *detail;

        if (fresh && r.pg && r.kafka && r.schema_version > 0 && r.consumer)
                return api_reply_json(req, 200,
                                      json_pack("{s:s, s:i, s:f}", "status", "ready",
                                                "schema_version", r.schema_version, "checked_ago_s",
                                                age));
        detail = !fresh                  ? "the readiness check has not finished for a while "
                                           "(PostgreSQL or Kafka does not answer)"
                 : !r.pg                 ? "PostgreSQL is not reachable"
                 : r.schema_version == 0 ? "migrations are not applied: run homing migrate"
                 : !r.kafka              ? "Kafka is not reachable"
                                         : "the scheduler has not joined its consumer group yet";
        return api_reply_problem(req, 503, "not-ready", "Not ready", detail,
                                 json_pack("{s:b, s:b, s:b, s:f}", "postgres", fresh && r.pg,
                                           "kafka", fresh && r.kafka, "consumer",
                                           fresh && r.consumer, "checked_ago_s", age));
}

enum MHD_Result api_metrics(struct request *req) {
        char *text = NULL;

        if (metrics_render(req->api->hooks.metrics, &text, NULL) < 0)
                return MHD_NO;
        return api_reply_text(req, 200, METRICS_CONTENT_TYPE, text);
}

enum MHD_Result api_stats(struct request *req) {
        struct store_result *res = NULL;
        json_t *doc;

        if (api_exec(req,
                     "SELECT json_build_object("
                     " 'transfers', (SELECT json_build_object("
                     "    'queued', count(*) FILTER (WHERE state = 'queued'),"
                     "    'running', count(*) FILTER (WHERE state = 'running'),"
                     "    'failed_last_hour', count(*) FILTER (WHERE state = 'failed'"
                     "                        AND updated_at > now() - interval '1 hour'))"
                     "   FROM transfers WHERE state IN ('queued', 'running', 'failed')),"
                     " 'decisions_last_minute', (SELECT count(*) FROM decisions"
                     "   WHERE created_at > now() - interval '1 minute'),"
                     " 'datacenters', (SELECT json_build_object("
                     "    'active', count(*) FILTER (WHERE status = 'active'),"
                     "    'draining', count(*) FILTER (WHERE status = 'draining'),"
                     "    'down', count(*) FILTER (WHERE status = 'down')) FROM datacenters),"
                     " 'time', homing_time(now()))::text",
                     0, NULL, &res) < 0)
                return api_reply_db_error(req);
        doc = json_loads(store_text(res, 0, 0), 0, NULL);
        store_result_free(res);
        if (!doc)
                return MHD_NO;
        /* This process's ingest: the dashboard turns the total into a rate. */
        json_object_set_new(doc, "ingest",
                            json_pack("{s:I, s:I}", "reports_accepted_total",
                                      (json_int_t)metrics_counter_value(req->api->reports_accepted,
                                                                        NULL),
                                      "requests_accepted_total",
                                      (json_int_t)metrics_counter_value(req->api->ingest_requests,
                                                                        (size_t[]){ 0 })));
        return api_reply_json(req, 200, doc);
}

enum MHD_Result api_me(struct request *req) {
        return api_reply_json(req, 200, api_actor_json(req));
}

enum MHD_Result api_openapi(struct request *req) {
        char *text = strdup(api_openapi_json);
        return api_reply_text(req, 200, "application/json", text);
}
