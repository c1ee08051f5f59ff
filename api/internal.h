/*
 * What the api's files share: the server, a request's state, the router,
 * the PostgreSQL pool, and the ways to answer. Not for use outside api/.
 *
 * A request goes: route (method + path template, path parameters) → body
 * read, bounded → access check (device token, operator token and role, or
 * agent token) →
 * handler. Handlers answer through api_reply_* and read PostgreSQL through
 * req->db, a pooled connection the dispatcher acquires for operator routes
 * and releases after the handler.
 */
#pragma once

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/api.h"
#include "auth/auth.h"

struct json_t;
struct store;
struct store_result;
struct request;

typedef enum MHD_Result (*api_handler)(struct request *req);

/* Who may call a route. */
enum api_access {
        ACCESS_PUBLIC,   /* anyone: health, the dashboard's files, the OpenAPI document */
        ACCESS_DEVICE,   /* a device token */
        ACCESS_VIEWER,   /* operator tokens, by role */
        ACCESS_OPERATOR,
        ACCESS_ADMIN,
        ACCESS_AGENT,    /* an agent token: the /v1/agent/ routes, for its datacenter */
};

struct api_route {
        const char *method;
        const char *pattern; /* "/v1/datacenters/{id}": {name} matches one segment */
        enum api_access access;
        api_handler handle;
        const char *summary;
};

#define API_MAX_PARAMS 3
#define API_PARAM_MAX 128

struct api_pool {
        pthread_mutex_t lock;
        pthread_cond_t freed;
        struct store **conns;
        bool *busy;
        size_t n;
};

struct api {
        const struct config *cfg;
        struct MHD_Daemon *daemon;
        struct bus_producer *producer;
        struct api_pool pool;
        struct auth_keyring *device_keys;
        char *tls_cert, *tls_key; /* PEM text, when serving HTTPS */
        uint16_t port;
        struct api_hooks hooks;
        struct metrics *own_metrics; /* when no registry was given */
        /* what /metrics says about this process's HTTP side */
        struct metrics_counter *ingest_requests; /* by status: api_ingest_statuses */
        struct metrics_counter *reports_accepted;
        struct metrics_counter *auth_failures;
        struct metrics_histogram *ingest_seconds;  /* request in to answer out */
        struct metrics_histogram *produce_seconds; /* produce to the last delivery report */
        struct metrics_fn *kafka_queue;
};

/* Who is calling, once the access check has passed. */
struct principal {
        enum { PRINCIPAL_NONE, PRINCIPAL_DEVICE, PRINCIPAL_OPERATOR, PRINCIPAL_AGENT } kind;
        enum auth_role role;
        int64_t token_id;
        char name[129];
        struct auth_device_claims device;
        char datacenter_id[65]; /* an agent's */
};

struct request {
        struct api *api;
        struct MHD_Connection *conn;
        const struct api_route *route;
        api_handler handle; /* the route's, or a 404/405 answer */
        const char *method;
        char params[API_MAX_PARAMS][API_PARAM_MAX + 1];
        size_t n_params;
        char allow[64]; /* for 405: the methods the path takes */
        char *body;
        size_t body_len, body_cap;
        bool body_too_large;
        bool checked; /* access checked and granted */
        struct principal who;
        struct store *db; /* pooled, for operator routes; NULL otherwise */
        /* ingest: reports handed to Kafka and not yet reported back */
        atomic_int pending;
        atomic_int failed;
        bool produced;
        int n_reports;
        double started_at, produced_at; /* metrics_now() */
};

/* ---- router (router.c) ---- */

extern const struct api_route api_routes[];
extern const size_t api_n_routes;

/* Chooses the route for method and path and fills req->params. */
void api_route(struct request *req, const char *method, const char *path);

/* ---- answers (reply.c) ---- */

/*
 * Answers with a JSON document (taken). `headers` is NULL or a NULL-ended
 * list of name, value pairs (ETag, Location, ...).
 */
enum MHD_Result api_reply(struct request *req, unsigned status, struct json_t *doc,
                          const char *const *headers);
enum MHD_Result api_reply_json(struct request *req, unsigned status, struct json_t *doc);
/* Answers with JSON text the database produced (borrowed). */
enum MHD_Result api_reply_raw(struct request *req, unsigned status, const char *json_text,
                              const char *const *headers);
/* Answers with text (taken). */
enum MHD_Result api_reply_text(struct request *req, unsigned status, const char *type,
                               char *text);
/* 204, with nothing. */
enum MHD_Result api_reply_empty(struct request *req, unsigned status);

/*
 * Answers with an RFC 9457 problem document. `slug` names the problem type;
 * `extra` (taken, may be NULL) adds members such as "errors".
 */
enum MHD_Result api_reply_problem(struct request *req, unsigned status, const char *slug,
                                  const char *title, const char *detail, struct json_t *extra);
/* The same, with `headers` (NULL-ended name, value pairs; borrowed): Retry-After, Allow, ... */
enum MHD_Result api_reply_problem_with(struct request *req, unsigned status, const char *slug,
                                       const char *title, const char *detail,
                                       struct json_t *extra, const char *const *headers);
/* 422 with errors[0] = {pointer, detail}. */
enum MHD_Result api_reply_invalid(struct request *req, const char *pointer, const char *detail);
/* 404 "no <what> <id>". */
enum MHD_Result api_reply_not_found(struct request *req, const char *what, const char *id);
enum MHD_Result api_reply_conflict(struct request *req, const char *slug, const char *detail);
/* 503 when PostgreSQL failed (the store logged why). */
enum MHD_Result api_reply_db_error(struct request *req);

/* ---- request helpers (reply.c) ---- */

/* A path parameter by position. */
const char *api_param(const struct request *req, size_t i);
/* A query argument, or NULL. */
const char *api_query(const struct request *req, const char *name);
/* A query argument that is a finite number: true and *out, false when absent or not one. */
bool api_query_number(const struct request *req, const char *name, double *out);

/*
 * Reads the body as one JSON object. Returns it (the caller owns it), or
 * NULL after answering 400/413/415/422.
 */
struct json_t *api_body_object(struct request *req, enum MHD_Result *reply);

enum api_field_type {
        FIELD_STRING,       /* non-empty text up to 256 */
        FIELD_ID,           /* the id alphabet, 1 to 64 */
        FIELD_NUMBER,       /* finite */
        FIELD_COUNT,        /* whole number >= 0 */
        FIELD_INTEGER,      /* whole number */
        FIELD_ID_ARRAY,     /* array of ids */
        FIELD_OBJECT,
        FIELD_BOOLEAN,
};

struct api_field {
        const char *name;
        enum api_field_type type;
        bool required;
        bool nullable;
        double min, max; /* numbers, when min < max */
};

/*
 * Checks an object against a list of fields (ended by a NULL name): unknown
 * members, missing required ones, types and bounds. Returns true, or false
 * after answering 422 with the member's pointer.
 */
bool api_check_fields(struct request *req, const struct json_t *obj,
                      const struct api_field *fields, enum MHD_Result *reply);

/* ETag of a row version: "\"<n>\"" into buf. */
void api_etag(int64_t row_version, char buf[32]);

/*
 * Checks If-Match against the current row version. Returns true to go on;
 * false after answering 412 (mismatch) or 428 (absent while `required`).
 */
bool api_if_match(struct request *req, int64_t row_version, bool required,
                  enum MHD_Result *reply);

/* Cursor pagination: ?limit= (1..500, 100) and ?cursor= (opaque). */
struct api_page {
        long limit;
        char limit_plus_one[24];
        char *after; /* the decoded cursor: the last key of the previous page; NULL first */
};

/* Parses limit and cursor. False after answering 400. `numeric`: keys are integers. */
bool api_page_parse(struct request *req, struct api_page *page, bool numeric,
                    enum MHD_Result *reply);
void api_page_fini(struct api_page *page);

/*
 * Answers {"items": [...], "next_cursor": ...} from rows whose column 0 is
 * the key and column `json_col` the item's JSON text; up to limit+1 rows.
 */
enum MHD_Result api_reply_page(struct request *req, const struct api_page *page,
                               const struct store_result *rows, int json_col);

/*
 * Answers with row 0 of `res`: column 0 its row_version (the ETag), column 1
 * its JSON. `location` (may be NULL) becomes the Location header.
 */
enum MHD_Result api_reply_row(struct request *req, unsigned status,
                              const struct store_result *res, const char *location);

/*
 * A resource with an ETag: its name (in messages and audit data), its
 * collection's path, and the query that reads one by id ($1) as
 * (row_version, json) for api_reply_row.
 */
struct api_resource {
        const char *name;
        const char *collection;
        const char *select_one;
};

/* GET of one: the row with its ETag, or 404 naming the resource. */
enum MHD_Result api_reply_one(struct request *req, const struct api_resource *r, const char *id);

/*
 * The end of a write: reads the row back as the transaction sees it, puts it
 * in the audit event's data under the resource's name and writes the event
 * (when audit_type is not NULL; audit_data is taken either way), commits,
 * and answers with the row (201 adds its Location).
 */
enum MHD_Result api_commit_and_reply(struct request *req, const struct api_resource *r,
                                     const char *id, unsigned status, const char *audit_type,
                                     struct json_t *audit_data);

/* BEGIN and COMMIT on req->db; what is left open is rolled back after the handler. */
int api_begin(struct request *req);
int api_commit(struct request *req);

/* ---- PostgreSQL (db.c) ---- */

int api_pool_init(struct api_pool *pool, const char *dsn, size_t n);
void api_pool_fini(struct api_pool *pool);
/* Waits for a free connection. */
struct store *api_db_acquire(struct api *a);
/* Rolls back whatever is open and hands the connection back. NULL is fine. */
void api_db_release(struct api *a, struct store *db);

/*
 * Queues an audit event (CloudEvents 1.0, structured JSON) in the outbox, in
 * the caller's transaction on req->db: type "io.homing.<what>", subject the
 * entity id (also the Kafka key), `data` (taken) gains "actor". 0 or <0.
 */
int api_audit(struct request *req, const char *type, const char *subject, struct json_t *data);

/* Runs a query on req->db: 1 and the rows when there is one at least, 0 (and
 * *out NULL) when none, <0 on failure. */
int api_fetch_one(struct request *req, const char *sql, int n, const char *const *params,
                  struct store_result **out);

/* Runs one statement on req->db. */
int api_exec(struct request *req, const char *sql, int n, const char *const *params,
             struct store_result **out);

/* ---- access (access.c) ---- */

/*
 * Checks the route's access: a device token (ingest) or an operator token
 * with a role at least the route's. Returns true, or false after answering
 * 401 (no or unknown credential) or 403 (known, not allowed).
 */
bool api_check_access(struct request *req, enum MHD_Result *reply);

/* The principal as {"kind", "token_id", "name", "role"} for audit events. */
struct json_t *api_actor_json(const struct request *req);

/*
 * A transfer as the API shows it (GET /v1/transfers/{id}, audit events), as
 * a SQL expression over the alias t.
 */
#define API_TRANSFER_JSON                                                                     \
        "json_build_object('id', t.id, 'snapshot_id', t.snapshot_id, 'from_dc', t.from_dc,"  \
        " 'to_dc', t.to_dc, 'template_id', t.template_id,"                                    \
        " 'template_present', t.template_present, 'priority', t.priority,"                   \
        " 'version', t.version, 'reason', t.reason, 'state', t.state,"                       \
        " 'attempts', t.attempts, 'max_attempts', t.max_attempts,"                           \
        " 'bytes_total', t.bytes_total, 'bytes_done', t.bytes_done,"                         \
        " 'bytes_sent', t.bytes_sent, 'error', t.error, 'retry_of', t.retry_of,"             \
        " 'idempotency_key', t.idempotency_key, 'lease_owner', t.lease_owner,"               \
        " 'lease_expires_at', homing_time(t.lease_expires_at),"                              \
        " 'not_before', homing_time(t.not_before),"                                          \
        " 'started_at', homing_time(t.started_at), 'finished_at', homing_time(t.finished_at)," \
        " 'created_at', homing_time(t.created_at), 'updated_at', homing_time(t.updated_at))"

/* The transfer `$1` as the API shows it: its id and its JSON. */
#define API_SELECT_TRANSFER \
        "SELECT t.id, " API_TRANSFER_JSON "::text FROM transfers t WHERE t.id = $1::bigint"

/*
 * Reads transfer `id` back, puts it in the audit event's data (taken) as
 * "transfer", writes the event, commits, and answers `status` with the
 * transfer (201 with its Location).
 */
enum MHD_Result api_transfer_commit_and_reply(struct request *req, const char *id, unsigned status,
                                              const char *audit_type, const char *subject,
                                              struct json_t *audit_data);

/* True for a transfer id in a path: 1 to 18 digits. */
bool api_transfer_id_valid(const char *id);

/* ---- handlers ---- */

enum MHD_Result api_ingest(struct request *req);               /* ingest.c */
void api_ingest_delivered(void *opaque, int err);
/* Counts an ingest answer by status and observes how long the request took. */
void api_count_ingest(struct request *req, unsigned status);
/* The statuses ingest answers with, as text, NULL-ended: one table for the counter and its labels. */
extern const char *const api_ingest_statuses[];

enum MHD_Result api_healthz(struct request *req);              /* health.c */
enum MHD_Result api_readyz(struct request *req);
enum MHD_Result api_metrics(struct request *req);
enum MHD_Result api_stats(struct request *req);
enum MHD_Result api_openapi(struct request *req);
enum MHD_Result api_me(struct request *req);

enum MHD_Result api_dashboard_index(struct request *req);      /* dashboard.c */
enum MHD_Result api_dashboard_file(struct request *req);

enum MHD_Result api_datacenters_list(struct request *req);     /* datacenters.c */
enum MHD_Result api_datacenters_nearest(struct request *req);
enum MHD_Result api_datacenters_get(struct request *req);
enum MHD_Result api_datacenters_create(struct request *req);
enum MHD_Result api_datacenters_update(struct request *req);
enum MHD_Result api_datacenters_delete(struct request *req);
enum MHD_Result api_datacenters_set_status(struct request *req);

enum MHD_Result api_templates_list(struct request *req);       /* templates.c */
enum MHD_Result api_templates_get(struct request *req);
enum MHD_Result api_templates_create(struct request *req);
enum MHD_Result api_templates_update(struct request *req);
enum MHD_Result api_templates_delete(struct request *req);
enum MHD_Result api_replicas_list(struct request *req);
enum MHD_Result api_replicas_put(struct request *req);
enum MHD_Result api_replicas_delete(struct request *req);

enum MHD_Result api_snapshots_list(struct request *req);       /* snapshots.c */
enum MHD_Result api_snapshots_get(struct request *req);
enum MHD_Result api_snapshots_create(struct request *req);
enum MHD_Result api_snapshots_update(struct request *req);
enum MHD_Result api_snapshots_delete(struct request *req);
enum MHD_Result api_snapshots_placement(struct request *req);
enum MHD_Result api_snapshots_placements(struct request *req);
enum MHD_Result api_snapshots_decisions(struct request *req);
enum MHD_Result api_users_what_if(struct request *req);

enum MHD_Result api_transfers_list(struct request *req);       /* transfers.c */
enum MHD_Result api_transfers_get(struct request *req);
enum MHD_Result api_transfers_cancel(struct request *req);
enum MHD_Result api_transfers_retry(struct request *req);

enum MHD_Result api_zones_list(struct request *req);           /* zones.c */
enum MHD_Result api_zones_get(struct request *req);
enum MHD_Result api_zones_put(struct request *req);
enum MHD_Result api_zones_delete(struct request *req);

enum MHD_Result api_tokens_list(struct request *req);          /* tokens.c */
enum MHD_Result api_tokens_create(struct request *req);
enum MHD_Result api_tokens_revoke(struct request *req);
enum MHD_Result api_device_tokens_create(struct request *req);

enum MHD_Result api_agent_endpoint(struct request *req);       /* agent.c */
enum MHD_Result api_agent_claim(struct request *req);
enum MHD_Result api_agent_progress(struct request *req);
enum MHD_Result api_agent_succeeded(struct request *req);
enum MHD_Result api_agent_failed(struct request *req);
enum MHD_Result api_agent_pause(struct request *req);
enum MHD_Result api_agent_evictions(struct request *req);
enum MHD_Result api_agent_pull_verify(struct request *req);
enum MHD_Result api_agent_version_register(struct request *req);

/* The OpenAPI document, generated at build time (openapi.json). */
extern const char api_openapi_json[];
