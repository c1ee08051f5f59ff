/*
 * reply — the ways to answer a request: JSON, text, nothing, problems.
 */
#pragma once

#include <microhttpd.h>

struct json_t;
struct request;

/*
 * Answers with a JSON document (taken). `headers` is NULL or a NULL-ended
 * list of name, value pairs (ETag, Location, ...).
 */
enum MHD_Result api_reply(struct request *req, unsigned status, struct json_t *doc,
                          const char *const *headers);
enum MHD_Result api_reply_json(struct request *req, unsigned status, struct json_t *doc);
/* Answers with JSON text the database produced (borrowed). */
enum MHD_Result api_reply_raw(struct request *req, unsigned status, const char *json_text,
                              const char *const *headers);
/* Answers with text (taken). */
enum MHD_Result api_reply_text(struct request *req, unsigned status, const char *type, char *text);
/* 204, with nothing. */
enum MHD_Result api_reply_empty(struct request *req, unsigned status);

/*
 * Answers with an RFC 9457 problem document. `slug` names the problem type;
 * `extra` (taken, may be NULL) adds members such as "errors".
 */
enum MHD_Result api_reply_problem(struct request *req, unsigned status, const char *slug,
                                  const char *title, const char *detail, struct json_t *extra);
/* The same, with `headers` (NULL-ended name, value pairs; borrowed): Retry-After, Allow, ... */
enum MHD_Result api_reply_problem_with(struct request *req, unsigned status, const char *slug,
                                       const char *title, const char *detail, struct json_t *extra,
                                       const char *const *headers);
/* 422 with errors[0] = {pointer, detail}. */
enum MHD_Result api_reply_invalid(struct request *req, const char *pointer, const char *detail);
/* 404 "no <what> <id>". */
enum MHD_Result api_reply_not_found(struct request *req, const char *what, const char *id);
enum MHD_Result api_reply_conflict(struct request *req, const char *slug, const char *detail);
/* 503 when PostgreSQL failed (the store logged why). */
enum MHD_Result api_reply_db_error(struct request *req);
/* After a lookup that did not find: 503 when it failed (r < 0), else 404 "no <what> <id>". */
enum MHD_Result api_reply_not_found_or_db_error(struct request *req, int r, const char *what,
                                                const char *id);
