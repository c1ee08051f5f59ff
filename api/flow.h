/*
 * flow — the one way a routed request reaches its handler.
 */
#pragma once

#include <microhttpd.h>

struct request;

/*
 * Runs the request's route as its row describes it (route.h): reads and
 * checks the body, validates, begins and locks the row, checks If-Match,
 * then calls the handler; frees what it read. A refusal is answered here.
 * Requests without a route (404, 405) go straight to req->handle.
 */
enum MHD_Result api_flow(struct request *req);
