/*
 * router — the route table (method, path template, who may call, handler)
 * and the choice of a route for a request.
 */
#pragma once

#include "api/request.h"

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

extern const struct api_route api_routes[];
extern const size_t api_n_routes;

/* Chooses the route for method and path and fills req->params (404/405 when none). */
void api_route(struct request *req, const char *method, const char *path);
