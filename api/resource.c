/*
 * The resource flow: a write's transaction (begin, commit), the row's ETag
 * and the If-Match it is checked against, the end of a write (read the row
 * back, audit it, commit, answer it), a PATCH from the route's members, one
 * row or a cursor page of rows.
 */
#include "api/resource.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/audit.h"
#include "api/input.h"
#include "api/parse.h"
#include "api/pool.h"
#include "api/reply.h"
#include "api/request.h"
#include "api/route.h"
#include "store/store.h"

void api_etag(int64_t row_version, char buf[32]) {
        snprintf(buf, 32, "\"%lld\"", (long long)row_version);
}

bool api_if_match(struct request *req, int64_t row_version, bool required, enum MHD_Result *reply) {
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

static enum MHD_Result reply_page(struct request *req, const struct api_page *page,
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
        return api_reply_json(req, 200,
                              json_pack("{s:o, s:o}", "items", items, "next_cursor", next));
}

enum MHD_Result api_reply_page_query(struct request *req, struct api_page *page, const char *sql,
                                     int n, const char *const *params) {
        struct store_result *res = NULL;
        enum MHD_Result ret = api_exec(req, sql, n, params, &res) < 0
                                      ? api_reply_db_error(req)
                                      : reply_page(req, page, res, 1);

        store_result_free(res);
        api_page_fini(page);
        return ret;
}

enum MHD_Result api_reply_list(struct request *req, bool numeric, const char *sql, int n,
                               const char *const *filters) {
        const char *params[API_LIST_FILTERS_MAX + 2];
        struct api_page page;
        enum MHD_Result ret;

        assert(n >= 0 && n <= API_LIST_FILTERS_MAX);
        if (!api_page_parse(req, &page, numeric, &ret))
                return ret;
        for (int i = 0; i < n; i++)
                params[i] = filters[i];
        params[n] = page.after;
        params[n + 1] = page.limit_plus_one;
        return api_reply_page_query(req, &page, sql, n + 2, params);
}

enum MHD_Result api_reply_row(struct request *req, unsigned status, const struct store_result *res,
                              const char *location) {
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
                json_object_set_new(audit_data, r->name,
                                    json_loads(store_text(res, 0, 1), 0, NULL));
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

enum MHD_Result api_create_and_reply(struct request *req, const struct api_resource *r,
                                     const char *insert, const char *audit_type) {
        const char *id = json_string_value(json_object_get(req->input, "id"));
        char *text = json_dumps(req->input, JSON_COMPACT), detail[96];
        const char *params[1] = { text };
        struct store_result *res = NULL;
        int inserted = text ? api_fetch_one(req, insert, 1, params, &res) : -ENOMEM;

        free(text);
        store_result_free(res);
        if (inserted < 0)
                return api_reply_db_error(req);
        if (inserted == 0) {
                snprintf(detail, sizeof(detail), "a %s with this id exists", r->name);
                return api_reply_conflict(req, "already-exists", detail);
        }
        return api_commit_and_reply(req, r, id, 201, audit_type, json_object());
}

enum MHD_Result api_patch(struct request *req) {
        const struct api_resource *r = req->route->resource;
        const struct api_field *f = req->route->body;
        const char *id = api_param(req, 0);
        char sql[1024], type[96], *text;
        size_t n;
        int w;

        /* The columns are the route's members (constants, never the client's). */
        n = (size_t)snprintf(sql, sizeof(sql), "UPDATE %s t SET (", r->table);
        for (size_t i = 0; f[i].name && n < sizeof(sql); i++)
                n += (size_t)snprintf(sql + n, sizeof(sql) - n, "%s, ", f[i].name);
        if (n < sizeof(sql))
                n += (size_t)snprintf(sql + n, sizeof(sql) - n, "updated_at) = (SELECT ");
        for (size_t i = 0; f[i].name && n < sizeof(sql); i++)
                n += (size_t)snprintf(sql + n, sizeof(sql) - n, "p.%s, ", f[i].name);
        if (n < sizeof(sql))
                n += (size_t)snprintf(sql + n, sizeof(sql) - n,
                                      "now() FROM jsonb_populate_record(t, $2::jsonb) p)"
                                      " WHERE t.id = $1");
        if (n >= sizeof(sql))
                return api_reply_problem(req, 500, "internal", "Internal error",
                                         "the update does not fit", NULL);
        text = json_dumps(req->input, JSON_COMPACT);
        {
                const char *params[2] = { id, text };
                w = text ? api_exec(req, sql, 2, params, NULL) : -ENOMEM;
        }
        free(text);
        if (w < 0)
                return api_reply_db_error(req);
        snprintf(type, sizeof(type), "io.homing.%s.updated", r->name);
        return api_commit_and_reply(req, r, id, 200, type,
                                    json_pack("{s:O}", "changes", req->input));
}
