/*
 * tokens — operator and agent tokens kept in PostgreSQL: made (the secret
 * is handed back once; only its SHA-256 is stored) and looked up by that
 * hash among the unrevoked ones. The two kinds differ only in their table
 * and the column beside the name (a role, a datacenter).
 */
#pragma once

#include <stdint.h>

struct store;

enum auth_token_kind {
        AUTH_TOKEN_OPERATOR, /* operator_tokens: the role */
        AUTH_TOKEN_AGENT,    /* agent_tokens: the datacenter the agent serves */
};

/* A known token: its id, name, and the column its kind keeps beside it. */
struct auth_token {
        int64_t id;
        char name[129];
        char scope[65]; /* the role ("viewer", ...) or the datacenter id */
};

/*
 * Looks `token` (the secret; borrowed) up by its SHA-256 among the unrevoked
 * tokens of `kind`. Returns 1 and *out, 0 when it is not known, or <0.
 */
int auth_token_lookup(struct store *db, enum auth_token_kind kind, const char *token,
                      struct auth_token *out);

/*
 * Makes an operator token: stores its SHA-256 with `name`, `role` ("viewer",
 * "operator", "admin") and `created_by`, and hands back the secret (malloc'd,
 * shown once: it is not kept) and the token's id. Runs in the caller's
 * transaction if one is open. Returns 0, -EINVAL for a bad name or role, or <0.
 */
int auth_operator_token_create(struct store *db, const char *name, const char *role,
                               const char *created_by, char **token, int64_t *id);

/*
 * Makes an agent token for the agent of `datacenter_id`: stores its SHA-256
 * with `name` and `created_by`, and hands back the secret (malloc'd, shown
 * once) and the token's id. Returns 0, -EINVAL for a bad name, -ENOENT for
 * an unknown datacenter, or <0.
 */
int auth_agent_token_create(struct store *db, const char *datacenter_id, const char *name,
                            const char *created_by, char **token, int64_t *id);
