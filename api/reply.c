/*
 * The ways to answer, and the small parsers every resource needs: the JSON
 * body and its fields, ETag and If-Match, cursor pagination. Problems are
 * RFC 9457 documents with a type "urn:homing:problem:<slug>".
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/internal.h"
#include "api/parse.h"
#include "auth/auth.h"
#include "base/config.h"
#include "store/store.h"

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

enum MHD_Result api_reply_text(struct request *req, unsigned status, const char *type,
                               char *text) {
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

const char *api_param(const struct request *req, size_t i) {
        return i < req->n_params ? req->params[i] : "";
}

const char *api_query(const struct request *req, const char *name) {
        return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

bool api_query_number(const struct request *req, const char *name, double *out) {
        const char *v = api_query(req, name);
        return v && api_number_parse(v, out) == 0;
}

json_t *api_body_object(struct request *req, enum MHD_Result *reply) {
        json_error_t jerr;
        json_t *doc;

        if (!api_content_type_is_json(MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
                                                      "Content-Type"))) {
                *reply = api_reply_problem(req, 415, "unsupported-media-type",
                                           "Unsupported media type",
                                           "the body is sent as application/json", NULL);
                return NULL;
        }
        if (req->body_too_large) {
                char detail[96];
                snprintf(detail, sizeof(detail), "the body exceeds %ld bytes",
                         req->api->cfg->max_body_bytes);
                *reply = api_reply_problem(req, 413, "body-too-large", "Request body too large",
                                           detail, NULL);
                return NULL;
        }
        doc = json_loadb(req->body ? req->body : "", req->body_len, JSON_REJECT_DUPLICATES, &jerr);
        if (!doc) {
                char detail[256];
                snprintf(detail, sizeof(detail), "line %d, column %d: %s", jerr.line, jerr.column,
                         jerr.text);
                *reply = api_reply_problem(req, 400, "malformed-json", "The body is not valid JSON",
                                           detail, NULL);
                return NULL;
        }
        if (!json_is_object(doc)) {
                json_decref(doc);
                *reply = api_reply_invalid(req, "", "the body is a JSON object");
                return NULL;
        }
        return doc;
}

static bool field_known(const struct api_field *fields, const char *name) {
        for (size_t i = 0; fields[i].name; i++)
                if (!strcmp(fields[i].name, name))
                        return true;
        return false;
}

/* NULL when the value fits the field, or why not. */
static const char *field_problem(const struct api_field *f, const json_t *v, char *buf,
                                 size_t size) {
        if (json_is_null(v))
                return f->nullable ? NULL : "must not be null";
        switch (f->type) {
        case FIELD_STRING: {
                const char *s = json_string_value(v);
                if (!s)
                        return "must be a string";
                if (!*s || strlen(s) > 256)
                        return "must be 1 to 256 characters";
                return NULL;
        }
        case FIELD_ID:
                if (!json_is_string(v))
                        return "must be a string";
                return auth_id_valid(json_string_value(v))
                               ? NULL
                               : "must be 1 to 64 letters, digits or -_.:@";
        case FIELD_NUMBER:
        case FIELD_COUNT:
        case FIELD_INTEGER: {
                double d;
                if (!json_is_number(v))
                        return "must be a number";
                d = json_number_value(v);
                if (f->type != FIELD_NUMBER && (!json_is_integer(v) || d != floor(d)))
                        return "must be a whole number";
                if (f->type == FIELD_COUNT && d < 0)
                        return "must not be negative";
                if (f->min < f->max && (d < f->min || d > f->max)) {
                        snprintf(buf, size, "must be within [%g, %g]", f->min, f->max);
                        return buf;
                }
                return NULL;
        }
        case FIELD_ID_ARRAY: {
                size_t i;
                json_t *item;
                if (!json_is_array(v))
                        return "must be an array of ids";
                json_array_foreach(v, i, item)
                        if (!json_is_string(item) || !auth_id_valid(json_string_value(item)))
                                return "must be an array of ids (1 to 64 letters, digits or -_.:@)";
                return json_array_size(v) <= 64 ? NULL : "holds at most 64 ids";
        }
        case FIELD_OBJECT:
                return json_is_object(v) ? NULL : "must be an object";
        case FIELD_BOOLEAN:
                return json_is_boolean(v) ? NULL : "must be true or false";
        }
        return "is not valid";
}

bool api_check_fields(struct request *req, const json_t *obj, const struct api_field *fields,
                      enum MHD_Result *reply) {
        char pointer[160], buf[96];
        const char *name, *why;
        json_t *v;

        json_object_foreach((json_t *)obj, name, v) {
                if (!field_known(fields, name)) {
                        snprintf(pointer, sizeof(pointer), "/%.128s", name);
                        *reply = api_reply_invalid(req, pointer, "is not a member of this resource");
                        return false;
                }
        }
        for (size_t i = 0; fields[i].name; i++) {
                v = json_object_get(obj, fields[i].name);
                snprintf(pointer, sizeof(pointer), "/%s", fields[i].name);
                if (!v) {
                        if (fields[i].required) {
                                *reply = api_reply_invalid(req, pointer, "is required");
                                return false;
                        }
                        continue;
                }
                if ((why = field_problem(&fields[i], v, buf, sizeof(buf)))) {
                        *reply = api_reply_invalid(req, pointer, why);
                        return false;
                }
        }
        return true;
}

void api_etag(int64_t row_version, char buf[32]) {
        snprintf(buf, 32, "\"%lld\"", (long long)row_version);
}

bool api_if_match(struct request *req, int64_t row_version, bool required,
                  enum MHD_Result *reply) {
        const char *header = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "If-Match");
        char etag[32];

        if (!header) {
                if (!required)
                        return true;
                *reply = api_reply_problem(req, 428, "precondition-required",
                                           "Precondition required",
                                           "send If-Match with the ETag you read, so that no "
                                           "one's change is overwritten unseen",
                                           NULL);
                return false;
        }
        api_etag(row_version, etag);
        if (api_if_match_names(header, etag))
                return true;
        *reply = api_reply_problem(
                req, 412, "precondition-failed", "Precondition failed",
                "the resource changed since you read it (its ETag is now different); read it "
                "again and decide",
                json_pack("{s:s}", "current_etag", etag));
        return false;
}

bool api_page_parse(struct request *req, struct api_page *page, bool numeric,
                    enum MHD_Result *reply) {
        const char *limit = api_query(req, "limit"), *cursor = api_query(req, "cursor");

        memset(page, 0, sizeof(*page));
        page->limit = 100;
        if (limit && api_limit_parse(limit, &page->limit) < 0) {
                *reply = api_reply_problem(req, 400, "invalid-query", "Invalid query",
                                           "limit is a whole number from 1 to 500", NULL);
                return false;
        }
        snprintf(page->limit_plus_one, sizeof(page->limit_plus_one), "%ld", page->limit + 1);
        if (cursor && api_cursor_decode(cursor, numeric, &page->after) < 0) {
                *reply = api_reply_problem(req, 400, "invalid-cursor", "Invalid cursor",
                                           "cursor is the next_cursor of a previous page", NULL);
                return false;
        }
        return true;
}

void api_page_fini(struct api_page *page) {
        free(page->after);
        page->after = NULL;
}

enum MHD_Result api_reply_page(struct request *req, const struct api_page *page,
                               const struct store_result *rows, int json_col) {
        size_t n = store_rows(rows), shown = n > (size_t)page->limit ? (size_t)page->limit : n;
        json_t *items = json_array(), *next = json_null();

        for (size_t i = 0; i < shown; i++) {
                json_t *item = json_loads(store_text(rows, i, json_col), 0, NULL);
                if (item)
                        json_array_append_new(items, item);
        }
        if (n > shown && shown > 0) {
                const char *key = store_text(rows, shown - 1, 0);
                char *cursor = NULL;
                if (api_cursor_encode(key, &cursor) == 0) {
                        json_decref(next);
                        next = json_string(cursor);
                        free(cursor);
                }
        }
        return api_reply_json(req, 200, json_pack("{s:o, s:o}", "items", items, "next_cursor", next));
}

enum MHD_Result api_reply_row(struct request *req, unsigned status,
                              const struct store_result *res, const char *location) {
        char etag[32];
        const char *headers[5] = { "ETag", etag, NULL, NULL, NULL };

        api_etag(store_int(res, 0, 0), etag);
        if (location) {
                headers[2] = "Location";
                headers[3] = location;
        }
        return api_reply_raw(req, status, store_text(res, 0, 1), headers);
}

int api_begin(struct request *req) {
        return store_begin(req->db);
}

int api_commit(struct request *req) {
        return store_commit(req->db);
}

enum MHD_Result api_reply_one(struct request *req, const struct api_resource *r, const char *id) {
        const char *params[1] = { id };
        struct store_result *res = NULL;
        enum MHD_Result ret;
        int found = api_fetch_one(req, r->select_one, 1, params, &res);

        if (found < 0)
                return api_reply_db_error(req);
        if (found == 0)
                return api_reply_not_found(req, r->name, id);
        ret = api_reply_row(req, 200, res, NULL);
        store_result_free(res);
        return ret;
}

enum MHD_Result api_commit_and_reply(struct request *req, const struct api_resource *r,
                                     const char *id, unsigned status, const char *audit_type,
                                     json_t *audit_data) {
        const char *params[1] = { id };
        struct store_result *res = NULL;
        enum MHD_Result ret;
        char location[192];

        if (api_fetch_one(req, r->select_one, 1, params, &res) <= 0) {
                json_decref(audit_data);
                return api_reply_db_error(req);
        }
        if (audit_type) {
                json_object_set_new(audit_data, r->name, json_loads(store_text(res, 0, 1), 0, NULL));
                if (api_audit(req, audit_type, id, audit_data) < 0) {
                        store_result_free(res);
                        return api_reply_db_error(req);
                }
        } else {
                json_decref(audit_data);
        }
        if (api_commit(req) < 0) {
                store_result_free(res);
                return api_reply_db_error(req);
        }
        snprintf(location, sizeof(location), "%s/%s", r->collection, id);
        ret = api_reply_row(req, status, res, status == 201 ? location : NULL);
        store_result_free(res);
        return ret;
}
