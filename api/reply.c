/*
 * The ways to answer: JSON documents, text, nothing, and RFC 9457 problems
 * with a type "urn:homing:problem:<slug>" and the headers the caller gives.
 * Building an answer calls nothing else in api/.
 */
#include "api/reply.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/request.h"

static enum MHD_Result queue(struct request *req, unsigned status, char *text /* taken */,
                             size_t len, const char *type, const char *const *headers) {
        struct MHD_Response *resp =
                MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
        enum MHD_Result ret;

        if (!resp) {
                free(text);
                return MHD_NO;
        }
        if (type)
                MHD_add_response_header(resp, "Content-Type", type);
        for (size_t i = 0; headers && headers[i] && headers[i + 1]; i += 2)
                MHD_add_response_header(resp, headers[i], headers[i + 1]);
        ret = MHD_queue_response(req->conn, status, resp);
        MHD_destroy_response(resp);
        return ret;
}

enum MHD_Result api_reply(struct request *req, unsigned status, json_t *doc,
                          const char *const *headers) {
        char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;

        json_decref(doc);
        if (!text)
                return MHD_NO;
        return queue(req, status, text, strlen(text), "application/json", headers);
}

enum MHD_Result api_reply_json(struct request *req, unsigned status, json_t *doc) {
        return api_reply(req, status, doc, NULL);
}

enum MHD_Result api_reply_raw(struct request *req, unsigned status, const char *json_text,
                              const char *const *headers) {
        /* Re-read, so every answer has one compact form whoever wrote the JSON. */
        json_t *doc = json_text ? json_loads(json_text, JSON_DECODE_ANY, NULL) : NULL;
        if (!doc)
                return MHD_NO;
        return api_reply(req, status, doc, headers);
}

enum MHD_Result api_reply_text(struct request *req, unsigned status, const char *type, char *text) {
        if (!text)
                return MHD_NO;
        return queue(req, status, text, strlen(text), type, NULL);
}

enum MHD_Result api_reply_empty(struct request *req, unsigned status) {
        struct MHD_Response *resp =
                MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        enum MHD_Result ret = MHD_queue_response(req->conn, status, resp);
        MHD_destroy_response(resp);
        return ret;
}

enum MHD_Result api_reply_problem_with(struct request *req, unsigned status, const char *slug,
                                       const char *title, const char *detail, json_t *extra,
                                       const char *const *headers) {
        char type[128];
        json_t *doc;
        char *text;

        snprintf(type, sizeof(type), "urn:homing:problem:%s", slug);
        doc = json_pack("{s:s, s:s, s:i, s:s}", "type", type, "title", title, "status", status,
                        "detail", detail);
        if (extra) {
                json_object_update(doc, extra);
                json_decref(extra);
        }
        text = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(doc);
        if (!text)
                return MHD_NO;
        return queue(req, status, text, strlen(text), "application/problem+json", headers);
}

enum MHD_Result api_reply_problem(struct request *req, unsigned status, const char *slug,
                                  const char *title, const char *detail, json_t *extra) {
        return api_reply_problem_with(req, status, slug, title, detail, extra, NULL);
}

enum MHD_Result api_reply_invalid(struct request *req, const char *pointer, const char *detail) {
        return api_reply_problem(req, 422, "invalid-request", "The request is not valid", detail,
                                 json_pack("{s:[{s:s, s:s}]}", "errors", "pointer", pointer,
                                           "detail", detail));
}

enum MHD_Result api_reply_not_found(struct request *req, const char *what, const char *id) {
        char detail[256];
        snprintf(detail, sizeof(detail), "no %s '%s'", what, id);
        return api_reply_problem(req, 404, "not-found", "Not found", detail, NULL);
}

enum MHD_Result api_reply_conflict(struct request *req, const char *slug, const char *detail) {
        return api_reply_problem(req, 409, slug, "Conflict with the current state", detail, NULL);
}

enum MHD_Result api_reply_db_error(struct request *req) {
        return api_reply_problem(req, 503, "database-unavailable", "Database unavailable",
                                 "PostgreSQL did not complete the request; nothing was changed. "
                                 "Try again.",
                                 NULL);
}

enum MHD_Result api_reply_not_found_or_db_error(struct request *req, int r, const char *what,
                                                const char *id) {
        return r < 0 ? api_reply_db_error(req) : api_reply_not_found(req, what, id);
}
