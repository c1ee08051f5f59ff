/*
 * The small texts a REST request carries that are not JSON: its
 * Content-Type, If-Match lists, ?limit=, ?cursor=, numbers in the query
 * and serial ids in the path. Pure functions (no request, no libmicrohttpd)
 * so that they can be unit-tested and fuzzed alone (tests/fuzz/http_args.c).
 * Internal to api/: reply.c answers with them.
 */
#pragma once

#include <stdbool.h>

/*
 * True when the If-Match value `header` (a comma-separated list; borrowed)
 * lets a write go on against a resource whose ETag is `etag` (e.g. "\"7\""):
 * it holds "*" or the tag itself. A weak tag (W/"7") never does: If-Match
 * compares strongly (RFC 9110 13.1.1).
 */
bool api_if_match_names(const char *header, const char *etag);

/* ?limit=: a whole number from 1 to 500. 0 and *out, or -EINVAL. */
int api_limit_parse(const char *text, long *out);

/* The cursor for a page that ends at `key`: its base64url (malloc'd). 0 or -ENOMEM. */
int api_cursor_encode(const char *key, char **out);

/*
 * The key a cursor carries (malloc'd, NUL-terminated): 0, -EINVAL for text
 * that is not a cursor (keys are 1 to 256 bytes without NUL; `numeric` keys
 * are the plain decimal of an int64, as PostgreSQL writes a bigint), -ENOMEM.
 */
int api_cursor_decode(const char *cursor, bool numeric, char **out);

/* True when a Content-Type value is application/json, with parameters or not (any case). */
bool api_content_type_is_json(const char *value);

/* A finite decimal number, the whole text: 0 and *out, or -EINVAL. */
int api_number_parse(const char *text, double *out);

/* True for a serial id (transfers, tokens) in a path: 1 to 18 digits, so it fits a bigint. */
bool api_serial_id_valid(const char *id);
