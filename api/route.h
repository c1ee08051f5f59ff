/*
 * A route as the table (router.c) holds it: method, path template, who may
 * call, handler, and what its request must be before the handler runs. A
 * type only: the router matches routes, the flow (flow.c) runs them.
 */
#pragma once

#include <microhttpd.h>
#include <stdbool.h>

#include "api/request.h"

struct api_field;
struct api_resource;

/* Who may call a route. */
enum api_access {
        ACCESS_PUBLIC, /* anyone: health, the dashboard's files, the OpenAPI document */
        ACCESS_DEVICE, /* a device token */
        ACCESS_VIEWER, /* operator tokens, by role */
        ACCESS_OPERATOR,
        ACCESS_ADMIN,
        ACCESS_AGENT, /* an agent token: the /v1/agent/ routes, for its datacenter */
};

/* What a route does with If-Match, against the locked row's ETag. */
enum api_if_match {
        IF_MATCH_NONE,     /* the resource has no ETag */
        IF_MATCH_HONOURED, /* checked when sent (412) */
        IF_MATCH_REQUIRED, /* 428 without */
};

/* What a route does when the row to lock is not there. */
enum api_lock {
        LOCK_NONE,          /* nothing is locked */
        LOCK_ROW,           /* 404 naming the resource */
        LOCK_ROW_IF_EXISTS, /* the handler goes on without (create or replace) */
};

/*
 * A route, and what its request must be before the handler runs (the
 * generic flow, flow.c, checks it in this order): its body's members, then
 * what the types cannot say (`validate`), then, in a transaction, the
 * resource's row locked by the path's first parameter, then If-Match
 * against the row's ETag. The handler does only its own part.
 */
struct api_route {
        const char *method;
        const char *pattern; /* "/v1/datacenters/{id}": {name} matches one segment */
        enum api_access access;
        api_handler handle;
        const char *summary;
        const struct api_field *body; /* a JSON object with these members; NULL: no body */
        /* Checks of the body (or path) beyond its fields' types; false after answering. */
        bool (*validate)(struct request *req, enum MHD_Result *reply);
        const struct api_resource *resource; /* what is locked */
        enum api_lock lock;
        enum api_if_match if_match;
        /* The largest body it takes, when not --max-body-bytes: a few routes carry
         * documents bigger than any other write (a replay's figures). */
        long max_body;
};
