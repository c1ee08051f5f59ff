/*
 * auth — who may talk to homing, and the cryptography that says so.
 *
 * Two kinds of credential:
 *
 *  - Device tokens, checked without a database round trip. A token is
 *        v1.<kid>.<base64url(payload)>.<base64url(mac)>
 *    where payload is the JSON {"device_id": .., "user_id": .., "exp": <Unix s>}
 *    and mac is HMAC-SHA-256 over "v1.<kid>.<base64url(payload)>" with the
 *    key named kid. A keyring holds several keys: the first signs, every one
 *    verifies, so keys rotate without invalidating the tokens in the field.
 *
 *  - Operator tokens: "hop_" and 43 base64url characters (32 random bytes).
 *    Only their SHA-256 is stored; the role (viewer, operator, admin) lives
 *    beside it in PostgreSQL.
 *
 *  - Agent tokens: "hag_" and 43 base64url characters, the same way; the
 *    datacenter the agent serves lives beside the hash.
 *
 * Nettle computes the HMAC, the hashes and base64; GnuTLS draws the random
 * bytes; comparisons of secrets are constant-time (nettle's memeql_sec).
 * Nothing here logs: errors are returned, callers decide what to say.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/must-check.h"

#define AUTH_ID_MAX 64
#define AUTH_KID_MAX 32
#define AUTH_TOKEN_MAX 1024
#define AUTH_OPERATOR_PREFIX "hop_"
#define AUTH_AGENT_PREFIX "hag_"

/* ---- roles ---------------------------------------------------------------- */

/* Ordered: a role may do what every lower one may. */
enum auth_role {
        AUTH_ROLE_NONE = 0,
        AUTH_ROLE_VIEWER = 1,   /* read */
        AUTH_ROLE_OPERATOR = 2, /* drain, cancel, retry */
        AUTH_ROLE_ADMIN = 3,    /* catalog, zones, tokens */
};

/* "viewer", "operator", "admin" to a role; AUTH_ROLE_NONE for anything else. */
enum auth_role auth_role_parse(const char *name);
/* The role's name ("none" for AUTH_ROLE_NONE); a static string. */
const char *auth_role_name(enum auth_role role);

/* ---- device tokens --------------------------------------------------------- */

struct auth_keyring;

/*
 * Reads a keyring from "kid:base64key[,kid:base64key...]" (kids of 1 to 32
 * characters [A-Za-z0-9_-], keys of at least 32 bytes in standard base64).
 * An empty or NULL spec gives an empty keyring that verifies nothing.
 * Returns 0, -EINVAL (err says why), or -ENOMEM.
 */
int auth_keyring_new(const char *spec, struct auth_keyring **out, char *err,
                     size_t err_size) MUST_CHECK;
struct auth_keyring *auth_keyring_free(struct auth_keyring *ring);
size_t auth_keyring_size(const struct auth_keyring *ring);
/* The kid that signs (the first), borrowed; NULL for an empty keyring. */
const char *auth_keyring_signing_kid(const struct auth_keyring *ring);

struct auth_device_claims {
        char device_id[AUTH_ID_MAX + 1];
        char user_id[AUTH_ID_MAX + 1];
        int64_t exp_s; /* Unix seconds */
        char kid[AUTH_KID_MAX + 1];
};

/* True for 1 to 64 characters of letters, digits and -_.:@ (the report ids). */
bool auth_id_valid(const char *id);

/*
 * Mints a token with the keyring's first key. *out is malloc'd (the caller
 * frees it). Returns 0, -EINVAL for invalid ids, -ENOKEY for an empty
 * keyring, -ENOMEM.
 */
int auth_device_token_mint(const struct auth_keyring *ring, const char *device_id,
                           const char *user_id, int64_t exp_s, char **out) MUST_CHECK;

/*
 * Checks a token's form, key, signature and expiry, in that order. Returns 0
 * and fills *claims; -EINVAL for a malformed token, -ENOKEY for an unknown
 * kid, -EBADMSG for a wrong signature, -EKEYEXPIRED when exp <= now_s.
 */
int auth_device_token_verify(const struct auth_keyring *ring, const char *token, int64_t now_s,
                             struct auth_device_claims *claims) MUST_CHECK;

/* A new random key as a keyring entry "kid:base64key" (malloc'd). 0, -EINVAL, -EIO, -ENOMEM. */
int auth_key_generate(const char *kid, char **out) MUST_CHECK;

/* ---- operator tokens ------------------------------------------------------- */

/* A new random operator token (malloc'd). Returns 0, -EIO or -ENOMEM. */
int auth_operator_token_generate(char **out) MUST_CHECK;

/* True when `token` has the operator token's form (prefix, length, alphabet). */
bool auth_operator_token_wellformed(const char *token);

/* ---- agent tokens ---------------------------------------------------------- */

/* A new random agent token (malloc'd). Returns 0, -EIO or -ENOMEM. */
int auth_agent_token_generate(char **out) MUST_CHECK;

/* True when `token` has the agent token's form (prefix, length, alphabet). */
bool auth_agent_token_wellformed(const char *token);

/*
 * A new random secret of 32 bytes as 43 base64url characters (malloc'd): the
 * agents' pull tickets. Returns 0, -EIO or -ENOMEM.
 */
int auth_secret_generate(char **out) MUST_CHECK;

/* ---- hashes ------------------------------------------------------------------ */

/* SHA-256 of `len` bytes as 64 lower-case hex digits and a NUL. */
void auth_sha256_hex(const void *data, size_t len, char out[65]);

/* ---- helpers ---------------------------------------------------------------- */

/* Constant-time equality of two buffers of `n` bytes. */
bool auth_equal(const void *a, const void *b, size_t n);

/* base64url without padding. *out is malloc'd and NUL-terminated. 0 or -ENOMEM. */
int auth_base64url_encode(const void *data, size_t len, char **out) MUST_CHECK;

/*
 * Decodes base64url without padding, in its one spelling (no stray low bits in
 * the last character). *out is malloc'd, NUL-terminated after *out_len bytes.
 * Returns 0, -EINVAL for text that is not base64url, -ENOMEM.
 */
int auth_base64url_decode(const char *text, size_t len, uint8_t **out, size_t *out_len) MUST_CHECK;

/* Fills `buf` with `len` random bytes fit for keys. 0 or -EIO. */
int auth_random(void *buf, size_t len) MUST_CHECK;
