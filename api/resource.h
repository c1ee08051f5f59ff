/*
 * resource — the flow every catalog resource shares: the write's
 * transaction, ETag and If-Match, the end of a write (read back, audit,
 * commit, answer), one row, a cursor page.
 */
#pragma once

#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>

struct json_t;
struct request;
struct store_result;

/* BEGIN and COMMIT on req->db; what is left open is rolled back after the handler. */
int api_begin(struct request *req);
int api_commit(struct request *req);

/* ETag of a row version: "\"<n>\"" into buf. */
void api_etag(int64_t row_version, char buf[32]);

/*
 * Checks If-Match against the current row version. Returns true to go on;
 * false after answering 412 (mismatch) or 428 (absent while `required`).
 */
bool api_if_match(struct request *req, int64_t row_version, bool required, enum MHD_Result *reply);

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
 * A list's whole answer, {"items": [...], "next_cursor": ...}: runs `sql`
 * (n params) whose rows, up to limit+1, have the key in column 0 and the
 * item's JSON text in column 1; answers the page or the database's error,
 * and finishes the page.
 */
enum MHD_Result api_reply_page_query(struct request *req, struct api_page *page, const char *sql,
                                     int n, const char *const *params);

/* The most filters api_reply_list passes before the page's two parameters. */
#define API_LIST_FILTERS_MAX 4

/*
 * A list that checks nothing between its page and its query: parses ?limit=
 * and ?cursor= (`numeric`: keys are integers; 400 answered here), then runs
 * `sql` with the n (at most API_LIST_FILTERS_MAX) `filters` as $1..$n, the
 * cursor's key as $n+1 and limit+1 as $n+2, and answers as
 * api_reply_page_query.
 */
enum MHD_Result api_reply_list(struct request *req, bool numeric, const char *sql, int n,
                               const char *const *filters);

/*
 * Answers with row 0 of `res`: column 0 its row_version (the ETag), column 1
 * its JSON. `location` (may be NULL) becomes the Location header.
 */
enum MHD_Result api_reply_row(struct request *req, unsigned status, const struct store_result *res,
                              const char *location);

/*
 * A resource: its name (in messages and audit data), its collection's path,
 * the query that reads one by id ($1) as (row_version, json) for
 * api_reply_row, and what the flow (flow.c) locks it with.
 */
struct api_resource {
        const char *name;
        const char *collection;
        const char *select_one;
        /* $1 the id (and $2 the calling agent's datacenter when `own`): the row,
         * FOR UPDATE; column 0 is its row_version when it has an ETag */
        const char *lock;
        bool own;
        bool (*id_valid)(const char *id); /* NULL: any id; false: 404 without asking */
        const char *table;                /* what api_patch updates */
};

/*
 * The end of a POST that creates, in the open transaction: runs `insert`
 * with $1 the request's body as JSON text, which returns a row when it
 * inserted and none when the body's id is taken (ON CONFLICT DO NOTHING);
 * answers 409 already-exists when taken, else ends as api_commit_and_reply
 * with 201 and the event `audit_type`.
 */
enum MHD_Result api_create_and_reply(struct request *req, const struct api_resource *r,
                                     const char *insert, const char *audit_type);

/*
 * PATCH: the members the route's body names replace their columns
 * (jsonb_populate_record over the locked row, so absent members stay),
 * updated_at moves, and the write ends as api_commit_and_reply with the
 * event io.homing.<resource>.updated and the changes.
 */
enum MHD_Result api_patch(struct request *req);

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
