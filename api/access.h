/*
 * access — the bearer token against the route's access.
 */
#pragma once

#include <microhttpd.h>
#include <stdbool.h>

struct api;
struct request;

/*
 * Checks the route's access: a device token (ingest), an operator token with
 * a role at least the route's, or an agent token. Fills req->who. Returns
 * true, or false after answering 401 (no or unknown credential) or 403
 * (known, not allowed).
 */
bool api_check_access(struct request *req, enum MHD_Result *reply);

/* Forgets every token looked up (after a revocation, so it counts here at once). */
void api_tokens_forget(struct api *a);
