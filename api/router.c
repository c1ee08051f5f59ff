/*
 * The routes: one table of method, path template, who may call, handler,
 * and what the request must be before the handler runs (its body, checks,
 * the row it locks, If-Match). `homing routes` prints it, the OpenAPI
 * document describes exactly it (a test compares them), the access check
 * and the flow (flow.c) read it.
 *
 * A template's {name} segment matches one non-empty path segment. When
 * several templates match a path, the one with more literal segments wins
 * (/v1/datacenters/nearest over /v1/datacenters/{id}). A path that matches
 * with another method is a 405 with Allow; no match is a 404.
 */
#include "api/router.h"

#include <stdio.h>
#include <jansson.h>
#include <string.h>

#include "api/api.h"
#include "api/agent.h"
#include "api/dashboard.h"
#include "api/datacenters.h"
#include "api/evacuations.h"
#include "api/failovers.h"
#include "api/file_diffs.h"
#include "api/health.h"
#include "api/ingest.h"
#include "api/power.h"
#include "api/placement_reports.h"
#include "api/protection.h"
#include "api/reply.h"
#include "api/request.h"
#include "api/resource.h"
#include "api/snapshots.h"
#include "api/versions.h"
#include "api/templates.h"
#include "api/tokens.h"
#include "api/transfers.h"
#include "api/trips.h"
#include "api/whatif.h"
#include "api/zones.h"

/* A write of the resource's row, locked by the path's first parameter. */
#define LOCK(res, mode) .lock = LOCK_ROW, .resource = &(res), .if_match = (mode)

/*
 * The table. A row says who may call, and what the request must be before
 * its handler runs: its body's members (.body), the checks beyond their
 * types (.validate), the row it locks (.lock, .resource) and what If-Match
 * must say (.if_match). flow.c does all of that, in that order.
 */
/* Rows name only what they use; the rest is zero (no body, no lock). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
const struct api_route api_routes[] = {
        /* anyone */
        { "GET", "/", ACCESS_PUBLIC, api_dashboard_index, "the operator dashboard" },
        { "GET", "/dashboard/{file}", ACCESS_PUBLIC, api_dashboard_file,
          "the dashboard's scripts, style and map data" },
        { "GET", "/healthz", ACCESS_PUBLIC, api_healthz, "alive" },
        { "GET", "/readyz", ACCESS_PUBLIC, api_readyz, "PostgreSQL, migrations and Kafka ready" },
        { "GET", "/v1/openapi.json", ACCESS_PUBLIC, api_openapi,
          "this API's OpenAPI 3.1 document" },
        /* devices */
        { "POST", "/v1/locations", ACCESS_DEVICE, api_ingest, "post location reports" },
        { "POST", "/v1/trips", ACCESS_DEVICE, api_trips_create,
          "announce the user's booked trip: destination, arrival, return", .body = api_trip_fields,
          .validate = api_trip_valid },
        { "GET", "/v1/trips", ACCESS_DEVICE, api_trips_list, "the user's trips not yet over" },
        { "DELETE", "/v1/trips/{id}", ACCESS_DEVICE, api_trips_delete,
          "withdraw one of the user's trips" },
        /* viewers */
        { "GET", "/metrics", ACCESS_VIEWER, api_metrics, "Prometheus metrics" },
        { "GET", "/v1/me", ACCESS_VIEWER, api_me, "who the token belongs to" },
        { "GET", "/v1/stats", ACCESS_VIEWER, api_stats, "queue depth, decisions, ingest" },
        { "GET", "/v1/datacenters", ACCESS_VIEWER, api_datacenters_list, "list datacenters" },
        { "GET", "/v1/datacenters/nearest", ACCESS_VIEWER, api_datacenters_nearest,
          "the k nearest datacenters" },
        { "GET", "/v1/datacenters/{id}", ACCESS_VIEWER, api_datacenters_get, "one datacenter" },
        { "GET", "/v1/templates", ACCESS_VIEWER, api_templates_list, "list templates" },
        { "GET", "/v1/templates/{id}", ACCESS_VIEWER, api_templates_get, "one template" },
        { "GET", "/v1/templates/{id}/replicas", ACCESS_VIEWER, api_replicas_list,
          "where a template is replicated" },
        { "GET", "/v1/snapshots", ACCESS_VIEWER, api_snapshots_list, "list snapshots" },
        { "GET", "/v1/snapshots/{id}", ACCESS_VIEWER, api_snapshots_get, "one snapshot" },
        { "GET", "/v1/snapshots/{id}/placement", ACCESS_VIEWER, api_snapshots_placement,
          "a snapshot's active placement" },
        { "GET", "/v1/snapshots/{id}/placements", ACCESS_VIEWER, api_snapshots_placements,
          "a snapshot's placement history" },
        { "GET", "/v1/snapshots/{id}/versions", ACCESS_VIEWER, api_versions_list,
          "a snapshot's registered versions" },
        { "GET", "/v1/snapshots/{id}/diff", ACCESS_VIEWER, api_versions_diff,
          "what differs between two versions of a snapshot" },
        { "GET", "/v1/file-diffs/{id}", ACCESS_VIEWER, api_file_diffs_get,
          "a file diff: queued, running (phase, percent), succeeded (the files) or failed" },
        { "GET", "/v1/compositions/{id}", ACCESS_VIEWER, api_compositions_get,
          "a composition: queued, running, succeeded (with its version) or failed" },
        { "GET", "/v1/snapshots/{id}/decisions", ACCESS_VIEWER, api_snapshots_decisions,
          "a snapshot's recent decisions" },
        { "GET", "/v1/snapshots/{id}/replicas", ACCESS_VIEWER, api_snapshots_replicas,
          "a snapshot's warm replicas and how far each lags" },
        { "GET", "/v1/snapshots/{id}/restore", ACCESS_VIEWER, api_snapshots_restore,
          "where the snapshot's next restore comes from: active, failed over or unrecoverable" },
        { "GET", "/v1/failovers", ACCESS_VIEWER, api_failovers_list,
          "failovers of sites declared down, newest first" },
        { "GET", "/v1/failovers/{id}", ACCESS_VIEWER, api_failovers_get,
          "one failover: its progress per priority level" },
        { "GET", "/v1/failovers/{id}/snapshots", ACCESS_VIEWER, api_failovers_snapshots,
          "a failover's snapshots: failed over (what was lost) or unrecoverable" },
        { "GET", "/v1/failover-tests", ACCESS_VIEWER, api_failover_tests_list,
          "failover tests (rehearsals), newest first" },
        { "GET", "/v1/failover-tests/{id}", ACCESS_VIEWER, api_failover_tests_get,
          "one failover test: its throwaway VMs and what their agents reported" },
        { "GET", "/v1/users/{id}/what-if", ACCESS_VIEWER, api_users_what_if,
          "what homing would decide if the user were there, and why" },
        { "GET", "/v1/users/{id}/trips", ACCESS_VIEWER, api_user_trips_list,
          "a user's announced trips not yet over" },
        { "GET", "/v1/transfers", ACCESS_VIEWER, api_transfers_list, "list transfers" },
        { "GET", "/v1/transfers/{id}", ACCESS_VIEWER, api_transfers_get, "one transfer" },
        { "GET", "/v1/protection-policies", ACCESS_VIEWER, api_protection_list,
          "what each priority level protects: replicas and RPO" },
        { "GET", "/v1/protection-policies/{level}", ACCESS_VIEWER, api_protection_get,
          "one priority level's protection policy" },
        { "GET", "/v1/evacuations", ACCESS_VIEWER, api_evacuations_list,
          "list evacuations, newest first" },
        { "GET", "/v1/evacuations/{id}", ACCESS_VIEWER, api_evacuations_get,
          "one evacuation: its plan and its progress per priority level" },
        { "GET", "/v1/zones", ACCESS_VIEWER, api_zones_list, "list zones" },
        { "GET", "/v1/zones/{id}", ACCESS_VIEWER, api_zones_get, "one zone" },
        { "GET", "/v1/placement-reports", ACCESS_VIEWER, api_placement_reports_list,
          "stored replay reports (placement quality), newest first" },
        { "GET", "/v1/placement-reports/{id}", ACCESS_VIEWER, api_placement_reports_get,
          "one stored replay report, with its figures" },
        /* operators */
        { "PUT", "/v1/datacenters/{id}/status", ACCESS_OPERATOR, api_datacenters_set_status,
          "set a datacenter's status (drain it)", .body = api_datacenter_status_fields,
          .validate = api_datacenter_valid, LOCK(api_datacenter_resource, IF_MATCH_HONOURED) },
        { "PUT", "/v1/protection-policies/{level}", ACCESS_OPERATOR, api_protection_put,
          "set a priority level's replicas and RPO", .body = api_protection_fields,
          .validate = api_protection_valid, LOCK(api_protection_resource, IF_MATCH_HONOURED) },
        { "POST", "/v1/snapshots/{id}/versions", ACCESS_OPERATOR, api_versions_compose,
          "compose a new version: a base with chosen items of another (its agent writes it)",
          .body = api_compose_fields, LOCK(api_compose_snapshot_resource, IF_MATCH_NONE) },
        { "POST", "/v1/datacenters/{id}/evacuations", ACCESS_OPERATOR, api_evacuations_create,
          "plan a datacenter's evacuation (dry_run) or run one", .body = api_evacuation_fields,
          .validate = api_evacuation_valid, LOCK(api_datacenter_resource, IF_MATCH_NONE) },
        { "POST", "/v1/evacuations/{id}/execute", ACCESS_OPERATOR, api_evacuations_execute,
          "run a planned evacuation", LOCK(api_evacuation_resource, IF_MATCH_NONE) },
        { "POST", "/v1/evacuations/{id}/cancel", ACCESS_OPERATOR, api_evacuations_cancel,
          "cancel an evacuation: what has not switched over stays",
          LOCK(api_evacuation_resource, IF_MATCH_NONE) },
        { "POST", "/v1/transfers/{id}/cancel", ACCESS_OPERATOR, api_transfers_cancel,
          "cancel a queued or running transfer", LOCK(api_transfer_resource, IF_MATCH_NONE) },
        { "POST", "/v1/transfers/{id}/retry", ACCESS_OPERATOR, api_transfers_retry,
          "retry a failed or cancelled transfer", LOCK(api_transfer_resource, IF_MATCH_NONE) },
        { "POST", "/v1/failover-tests", ACCESS_OPERATOR, api_failover_tests_create,
          "rehearse a site's failover: throwaway copies at its replica sites, isolated",
          .body = api_failover_test_fields },
        { "POST", "/v1/failover-tests/{id}/cleanup", ACCESS_OPERATOR, api_failover_tests_cleanup,
          "clean a failover test up: its throwaway VMs are powered off and removed",
          LOCK(api_failover_test_resource, IF_MATCH_NONE) },
        { "POST", "/v1/failovers/{id}/failback", ACCESS_OPERATOR, api_failovers_failback,
          "move a returned site's failed-over snapshots back (only the difference travels)",
          LOCK(api_failover_resource, IF_MATCH_NONE) },
        { "POST", "/v1/placement-reports", ACCESS_OPERATOR, api_placement_reports_create,
          "store a replay's figures (homing replay --json) under ?name=",
          .validate = api_placement_report_valid, .max_body = API_PLACEMENT_REPORT_MAX_BYTES },
        { "DELETE", "/v1/placement-reports/{id}", ACCESS_OPERATOR, api_placement_reports_delete,
          "remove a stored replay report", LOCK(api_placement_report_resource, IF_MATCH_NONE) },
        { "DELETE", "/v1/users/{id}/trips/{trip_id}", ACCESS_OPERATOR, api_user_trips_delete,
          "remove a user's announced trip" },
        /* admins */
        { "POST", "/v1/datacenters", ACCESS_ADMIN, api_datacenters_create, "add a datacenter",
          .body = api_datacenter_fields, .validate = api_datacenter_valid },
        { "PATCH", "/v1/datacenters/{id}", ACCESS_ADMIN, api_patch, "change a datacenter",
          .body = api_datacenter_patch_fields, .validate = api_datacenter_valid,
          LOCK(api_datacenter_resource, IF_MATCH_REQUIRED) },
        { "DELETE", "/v1/datacenters/{id}", ACCESS_ADMIN, api_datacenters_delete,
          "remove a datacenter", LOCK(api_datacenter_resource, IF_MATCH_HONOURED) },
        { "POST", "/v1/templates", ACCESS_ADMIN, api_templates_create, "add a template",
          .body = api_template_fields },
        { "PATCH", "/v1/templates/{id}", ACCESS_ADMIN, api_patch, "change a template",
          .body = api_template_patch_fields, LOCK(api_template_resource, IF_MATCH_REQUIRED) },
        { "DELETE", "/v1/templates/{id}", ACCESS_ADMIN, api_templates_delete, "remove a template",
          LOCK(api_template_resource, IF_MATCH_HONOURED) },
        { "PUT", "/v1/templates/{id}/replicas/{datacenter_id}", ACCESS_ADMIN, api_replicas_put,
          "record a template's replica at a datacenter",
          LOCK(api_template_resource, IF_MATCH_HONOURED) },
        { "DELETE", "/v1/templates/{id}/replicas/{datacenter_id}", ACCESS_ADMIN,
          api_replicas_delete, "forget a template's replica",
          LOCK(api_template_resource, IF_MATCH_HONOURED) },
        { "POST", "/v1/snapshots", ACCESS_ADMIN, api_snapshots_create,
          "add a snapshot and its first placement", .body = api_snapshot_fields },
        { "PATCH", "/v1/snapshots/{id}", ACCESS_ADMIN, api_snapshots_update, "change a snapshot",
          .body = api_snapshot_patch_fields, .validate = api_snapshot_valid,
          LOCK(api_snapshot_resource, IF_MATCH_REQUIRED) },
        { "DELETE", "/v1/snapshots/{id}", ACCESS_ADMIN, api_snapshots_delete, "remove a snapshot",
          LOCK(api_snapshot_resource, IF_MATCH_HONOURED) },
        { "PUT", "/v1/zones/{id}", ACCESS_ADMIN, api_zones_put, "create or replace a zone",
          .body = api_zone_fields, .validate = api_zone_valid, .lock = LOCK_ROW_IF_EXISTS,
          .resource = &api_zone_resource, .if_match = IF_MATCH_HONOURED },
        { "DELETE", "/v1/zones/{id}", ACCESS_ADMIN, api_zones_delete, "remove a zone",
          LOCK(api_zone_resource, IF_MATCH_HONOURED) },
        { "GET", "/v1/tokens", ACCESS_ADMIN, api_tokens_list, "list operator tokens" },
        { "POST", "/v1/tokens", ACCESS_ADMIN, api_tokens_create, "make an operator token",
          .body = api_tokens_create_fields },
        { "DELETE", "/v1/tokens/{id}", ACCESS_ADMIN, api_tokens_revoke,
          "revoke an operator token" },
        { "POST", "/v1/device-tokens", ACCESS_ADMIN, api_device_tokens_create,
          "mint a device token", .body = api_device_tokens_create_fields },
        /* agents, each for its own datacenter */
        { "PUT", "/v1/agent/endpoint", ACCESS_AGENT, api_agent_endpoint,
          "say where this datacenter's agent answers its peers",
          .body = api_agent_endpoint_fields },
        { "POST", "/v1/agent/claim", ACCESS_AGENT, api_agent_claim,
          "claim the next due transfer into this datacenter (by priority, then age)",
          .body = api_agent_claim_fields },
        { "POST", "/v1/agent/transfers/{id}/progress", ACCESS_AGENT, api_agent_progress,
          "report a claimed transfer's progress and renew its lease",
          .body = api_agent_progress_fields },
        { "POST", "/v1/agent/transfers/{id}/succeeded", ACCESS_AGENT, api_agent_succeeded,
          "a claimed transfer's copy is verified: the placement moves to it",
          .body = api_agent_succeeded_fields, .validate = api_agent_digest_valid,
          LOCK(api_agent_transfer_resource, IF_MATCH_NONE) },
        { "POST", "/v1/agent/transfers/{id}/failed", ACCESS_AGENT, api_agent_failed,
          "a claimed transfer failed: retry it after a back-off, or end it",
          .body = api_agent_failed_fields, LOCK(api_agent_transfer_resource, IF_MATCH_NONE) },
        { "POST", "/v1/agent/evictions", ACCESS_AGENT, api_agent_evictions,
          "the cached copies to delete here now: marked evicted, listed",
          .body = api_agent_evictions_fields },
        { "POST", "/v1/agent/transfers/{id}/pause", ACCESS_AGENT, api_agent_pause,
          "step aside for a more urgent transfer: back to the queue, resumable",
          .body = api_agent_pause_fields, LOCK(api_agent_transfer_resource, IF_MATCH_NONE) },
        { "POST", "/v1/agent/pulls/verify", ACCESS_AGENT, api_agent_pull_verify,
          "check a peer's pull ticket for a transfer from this datacenter",
          .body = api_agent_pull_verify_fields },
        { "POST", "/v1/agent/snapshots/{id}/versions", ACCESS_AGENT, api_agent_version_register,
          "register a new version of a snapshot active at this datacenter",
          .body = api_agent_version_register_fields, .validate = api_agent_digest_valid,
          LOCK(api_agent_snapshot_resource, IF_MATCH_NONE) },
        { "GET", "/v1/agent/vms", ACCESS_AGENT, api_power_list,
          "the VMs that should run at this datacenter, and those its records say run here" },
        { "POST", "/v1/agent/vms/{id}/power", ACCESS_AGENT, api_power_report,
          "report a VM powered on (fenced by epoch), powered off, or failed to start",
          .body = api_power_fields, .validate = api_power_valid,
          LOCK(api_power_snapshot_resource, IF_MATCH_NONE) },
        { "POST", "/v1/agent/failover-tests/vms/{id}", ACCESS_AGENT, api_power_test_report,
          "report a failover test's throwaway VM powered on, powered off, or failed to start",
          .body = api_power_test_fields, .validate = api_power_valid,
          LOCK(api_power_test_vm_resource, IF_MATCH_NONE) },
        { "POST", "/v1/agent/compositions/claim", ACCESS_AGENT, api_agent_composition_claim,
          "the next composition to write here: running now, or 204",
          .body = api_agent_composition_claim_fields },
        { "POST", "/v1/agent/compositions/{id}/succeeded", ACCESS_AGENT,
          api_agent_composition_succeeded, "a claimed composition ended with a registered version",
          .body = api_agent_composition_succeeded_fields,
          LOCK(api_agent_composition_resource, IF_MATCH_NONE) },
        { "POST", "/v1/agent/compositions/{id}/failed", ACCESS_AGENT, api_agent_composition_failed,
          "a claimed composition could not be written", .body = api_agent_composition_failed_fields,
          LOCK(api_agent_composition_resource, IF_MATCH_NONE) },
        { "POST", "/v1/agent/diffs/claim", ACCESS_AGENT, api_agent_disk_diff_claim,
          "the next disk diff to compute here: running now, or 204",
          .body = api_agent_disk_diff_claim_fields },
        { "POST", "/v1/agent/diffs/{id}/succeeded", ACCESS_AGENT, api_agent_disk_diff_succeeded,
          "a claimed disk diff's extents", .body = api_agent_disk_diff_succeeded_fields,
          LOCK(api_agent_disk_diff_resource, IF_MATCH_NONE) },
        { "POST", "/v1/agent/diffs/{id}/failed", ACCESS_AGENT, api_agent_disk_diff_failed,
          "a claimed disk diff could not be computed", .body = api_agent_composition_failed_fields,
          LOCK(api_agent_disk_diff_resource, IF_MATCH_NONE) },
        { "POST", "/v1/agent/file-diffs/claim", ACCESS_AGENT, api_agent_file_diff_claim,
          "the next file diff to compute here: running now, or 204",
          .body = api_agent_disk_diff_claim_fields },
        { "POST", "/v1/agent/file-diffs/{id}/progress", ACCESS_AGENT, api_agent_file_diff_progress,
          "how far a claimed file diff is: its phase and percent",
          .body = api_agent_file_diff_progress_fields,
          LOCK(api_agent_file_diff_resource, IF_MATCH_NONE) },
        { "POST", "/v1/agent/file-diffs/{id}/succeeded", ACCESS_AGENT,
          api_agent_file_diff_succeeded, "a claimed file diff's files",
          .body = api_agent_file_diff_succeeded_fields,
          LOCK(api_agent_file_diff_resource, IF_MATCH_NONE) },
        { "POST", "/v1/agent/file-diffs/{id}/failed", ACCESS_AGENT, api_agent_file_diff_failed,
          "a claimed file diff could not be computed (unavailable: libguestfs cannot run here)",
          .body = api_agent_file_diff_failed_fields,
          LOCK(api_agent_file_diff_resource, IF_MATCH_NONE) },
};
#pragma GCC diagnostic pop

const size_t api_n_routes = sizeof(api_routes) / sizeof(api_routes[0]);

static const char *const access_names[] = { "public",   "device", "viewer",
                                            "operator", "admin",  "agent" };

void api_routes_print(FILE *f) {
        for (size_t i = 0; i < api_n_routes; i++)
                fprintf(f, "%-6s %-46s %-8s %s\n", api_routes[i].method, api_routes[i].pattern,
                        access_names[api_routes[i].access], api_routes[i].summary);
}

/*
 * Matches a path against a template. Returns -1 for no match, else the
 * number of literal segments; fills params when `params` is not NULL.
 * Literal segments are compared as they are read: every request is matched
 * against every route, and most part from the path at their first letters.
 */
static int match(const char *pattern, const char *path,
                 char params[API_MAX_PARAMS][API_PARAM_MAX + 1], size_t *n_params) {
        int literal = 0;
        size_t n = 0;

        do {
                if (*pattern != '/' || *path != '/')
                        return -1;
                pattern++;
                path++;
                if (*pattern == '{') {
                        size_t slen = strcspn(path, "/");
                        if (slen == 0 || slen > API_PARAM_MAX || n == API_MAX_PARAMS)
                                return -1;
                        if (params) {
                                memcpy(params[n], path, slen);
                                params[n][slen] = '\0';
                        }
                        n++;
                        pattern += strcspn(pattern, "/");
                        path += slen;
                } else {
                        while (*pattern && *pattern != '/' && *pattern == *path) {
                                pattern++;
                                path++;
                        }
                        if ((*pattern && *pattern != '/') || (*path && *path != '/'))
                                return -1;
                        literal++;
                }
        } while (*pattern || *path);
        if (n_params)
                *n_params = n;
        return literal;
}

static enum MHD_Result not_found(struct request *req) {
        return api_reply_problem(req, 404, "not-found", "Not found", "no such resource", NULL);
}

static enum MHD_Result wrong_method(struct request *req) {
        const char *const allow[] = { "Allow", req->allow, NULL };
        return api_reply_problem_with(req, 405, "method-not-allowed", "Method not allowed",
                                      "this resource does not take that method", NULL,
                                      req->allow[0] ? allow : NULL);
}

/* Answers name path parameters; a parameter that is not text cannot be named. */
static bool params_utf8(const struct request *req) {
        for (size_t i = 0; i < req->n_params; i++) {
                /* Jansson refuses a string that is not UTF-8: its check, not ours. */
                json_t *s = json_string(req->params[i]);
                if (!s)
                        return false;
                json_decref(s);
        }
        return true;
}

static enum MHD_Result bad_param(struct request *req) {
        return api_reply_problem(req, 400, "invalid-path", "Invalid path",
                                 "a path segment is not UTF-8 text", NULL);
}

void api_route(struct request *req, const char *method, const char *path) {
        int literal[sizeof(api_routes) / sizeof(api_routes[0])], best = -1;

        for (size_t i = 0; i < api_n_routes; i++) {
                literal[i] = match(api_routes[i].pattern, path, NULL, NULL);
                if (literal[i] > best)
                        best = literal[i];
        }
        req->route = NULL;
        req->handle = not_found;
        if (best < 0)
                return;
        for (size_t i = 0; i < api_n_routes; i++) {
                if (literal[i] != best)
                        continue;
                if (!strcmp(method, api_routes[i].method)) {
                        match(api_routes[i].pattern, path, req->params, &req->n_params);
                        if (!params_utf8(req)) {
                                req->handle = bad_param;
                                return;
                        }
                        req->route = &api_routes[i];
                        req->handle = api_routes[i].handle;
                        return;
                }
                if (strlen(req->allow) + strlen(api_routes[i].method) + 3 < sizeof(req->allow)) {
                        if (req->allow[0])
                                strcat(req->allow, ", ");
                        strcat(req->allow, api_routes[i].method);
                }
        }
        req->handle = wrong_method;
}
