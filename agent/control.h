/*
 * control — an agent's calls to homing's API (agent/README.md): claim a job,
 * report progress, end it, check a peer's pull ticket, register a version.
 * HTTP(S) through libcurl, JSON through Jansson; one handle per thread.
 */
#pragma once

#include <jansson.h>
#include <stdint.h>

struct control;

/*
 * `api_url` ("http://127.0.0.1:58080") and `token` (hag_...) are copied;
 * `ca` (may be NULL or "": the system's) is a CA bundle file to trust for
 * https, copied too.
 */
int control_new(const char *api_url, const char *token, const char *ca, struct control **out);
struct control *control_free(struct control *c);

/*
 * One call: `body` (borrowed, may be NULL) as JSON; the status comes back
 * and, when the answer has one, its JSON document in *reply (the caller
 * decrefs). Returns 0 when an answer came (whatever its status), -EIO when
 * none did (err says why).
 */
int control_call(struct control *c, const char *method, const char *path, json_t *body,
                 long *status, json_t **reply, char *err, size_t err_size);
