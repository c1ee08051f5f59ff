/*
 * The request's state, from its first byte to its answer: the route it
 * took, its parameters and body, who calls, its pooled connection, and for
 * ingest what Kafka has still to report. A type only: the files that read
 * a request include it; input.c reads what it carries.
 *
 * A request goes: route (router.c) → body read, bounded (server.c) → access
 * check (access.c) → its handler. Handlers read PostgreSQL through req->db,
 * a pooled connection (pool.c) held for the request.
 */
#pragma once

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/auth.h"

struct api;
struct api_route;
struct request;
struct store;
struct store_result;
struct json_t;

typedef enum MHD_Result (*api_handler)(struct request *req);

#define API_MAX_PARAMS 3
#define API_PARAM_MAX 128

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
        long body_max; /* the route's bound, else --max-body-bytes */
        bool body_too_large;
        bool checked; /* access checked and granted */
        struct principal who;
        struct store *db; /* pooled, for operator routes; NULL otherwise */
        /* the flow's (flow.c), for the handler: the body, the row locked */
        struct json_t *input;
        struct store_result *locked; /* NULL when the route locks nothing, or it was not there */
        int64_t row_version;
        /* ingest: reports handed to Kafka and not yet reported back */
        atomic_int pending;
        atomic_int failed;
        bool produced;
        bool suspended; /* counted in api->suspended until resumed or completed */
        int n_reports;
        double started_at, produced_at; /* metrics_now() */
};
