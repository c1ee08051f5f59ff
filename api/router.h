/*
 * router — the route table and the choice of a route for a request.
 */
#pragma once

#include <stddef.h>

#include "api/route.h"

struct request;

extern const struct api_route api_routes[];
extern const size_t api_n_routes;

/* Chooses the route for method and path and fills req->params (404/405 when none). */
void api_route(struct request *req, const char *method, const char *path);
