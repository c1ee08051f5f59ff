/*
 * The generic flow of a request, from its route's row: the body as a JSON
 * object with the row's members (422 naming the member), the row's own
 * validation, then — when the route writes a resource — BEGIN, the row
 * locked by the path's first parameter (404 naming the resource), and
 * If-Match against its ETag (412, or 428 when required). The handler finds
 * the body in req->input and the locked row in req->locked, and does only
 * its own part; the transaction it leaves open is rolled back when the
 * connection goes back to the pool.
 */
#include "api/flow.h"

#include <jansson.h>
#include <string.h>

#include "api/input.h"
#include "api/pool.h"
#include "api/reply.h"
#include "api/request.h"
#include "api/resource.h"
#include "api/route.h"
#include "store/store.h"

/* Begins and locks the route's row: true to go on, false after answering. */
static bool lock(struct request *req, const struct api_route *route, enum MHD_Result *reply) {
        const struct api_resource *r = route->resource;
        const char *id = api_param(req, 0);
        const char *params[2] = { id, req->who.datacenter_id };
        int found = 0;

        if (!r->id_valid || r->id_valid(id)) {
                if (api_begin(req) < 0) {
                        *reply = api_reply_db_error(req);
                        return false;
                }
                found = api_fetch_one(req, r->lock, r->own ? 2 : 1, params, &req->locked);
        }
        if (found < 0) {
                *reply = api_reply_db_error(req);
                return false;
        }
        if (found == 0 && route->lock == LOCK_ROW) {
                *reply = api_reply_not_found(req, r->name, id);
                return false;
        }
        /* If-Match, even "*", asks for a resource that exists (RFC 9110 13.1.1):
         * a PUT that would create it is refused instead. */
        if (found == 0 && route->if_match != IF_MATCH_NONE &&
            MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "If-Match")) {
                *reply = api_reply_problem(req, 412, "precondition-failed", "Precondition failed",
                                           "If-Match names a current version, and there is none: "
                                           "the resource does not exist",
                                           NULL);
                return false;
        }
        if (found == 1 && route->if_match != IF_MATCH_NONE) {
                req->row_version = store_int(req->locked, 0, 0);
                return api_if_match(req, req->row_version, route->if_match == IF_MATCH_REQUIRED,
                                    reply);
        }
        return true;
}

enum MHD_Result api_flow(struct request *req) {
        const struct api_route *route = req->route;
        enum MHD_Result ret;

        if (!route)
                return req->handle(req);
        if (route->body) {
                req->input = api_body_object(req, &ret);
                if (!req->input)
                        return ret;
                if (!api_check_fields(req, req->input, route->body, &ret))
                        goto out;
                if (!strcmp(route->method, "PATCH") && json_object_size(req->input) == 0) {
                        ret = api_reply_invalid(req, "", "name at least one member to change");
                        goto out;
                }
        }
        if (route->validate && !route->validate(req, &ret))
                goto out;
        if (route->lock != LOCK_NONE && !lock(req, route, &ret))
                goto out;
        ret = req->handle(req);
out:
        req->locked = store_result_free(req->locked);
        json_decref(req->input);
        req->input = NULL;
        return ret;
}
