/*
 * Operator and agent tokens in PostgreSQL. A secret is never stored nor
 * compared: its SHA-256 is, and a lookup is by that hash. One table of the
 * two kinds (table, the column beside the name) serves making and looking up.
 */
#include "auth/tokens.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "store/store.h"

static const struct {
        const char *lookup; /* $1 the hash: id, name, scope */
        const char *insert; /* $1 scope, $2 name, $3 hash, $4 created_by: id */
        int (*generate)(char **out);
} kinds[] = {
        [AUTH_TOKEN_OPERATOR] = {
                "SELECT id, name, role FROM operator_tokens"
                " WHERE secret_sha256 = $1 AND revoked_at IS NULL",
                "INSERT INTO operator_tokens (role, name, secret_sha256, created_by)"
                " VALUES ($1, $2, $3, $4) RETURNING id",
                auth_operator_token_generate,
        },
        [AUTH_TOKEN_AGENT] = {
                "SELECT id, name, datacenter_id FROM agent_tokens"
                " WHERE secret_sha256 = $1 AND revoked_at IS NULL",
                "INSERT INTO agent_tokens (datacenter_id, name, secret_sha256, created_by)"
                " VALUES ($1, $2, $3, $4) RETURNING id",
                auth_agent_token_generate,
        },
};

int auth_token_lookup(struct store *db, enum auth_token_kind kind, const char *token,
                      struct auth_token *out) {
        char hash[65];
        const char *params[1] = { hash };
        struct store_result *res = NULL;
        int r;

        auth_sha256_hex(token, strlen(token), hash);
        r = store_exec(db, kinds[kind].lookup, 1, params, &res);
        if (r < 0)
                return r;
        r = store_rows(res) == 1;
        if (r) {
                out->id = store_int(res, 0, 0);
                snprintf(out->name, sizeof(out->name), "%s", store_text(res, 0, 1));
                snprintf(out->scope, sizeof(out->scope), "%s", store_text(res, 0, 2));
        }
        store_result_free(res);
        return r;
}

/* A new secret of `kind`, its hash stored beside `scope` and `name`. */
static int create(struct store *db, enum auth_token_kind kind, const char *scope, const char *name,
                  const char *created_by, char **token, int64_t *id) {
        struct store_result *res = NULL;
        char hash[65], *secret = NULL;
        int r;

        if (!name || !*name || strlen(name) > 128)
                return -EINVAL;
        r = kinds[kind].generate(&secret);
        if (r < 0)
                return r;
        auth_sha256_hex(secret, strlen(secret), hash);
        {
                const char *params[4] = { scope, name, hash, created_by };
                r = store_exec(db, kinds[kind].insert, 4, params, &res);
        }
        if (r < 0 || store_rows(res) != 1) {
                explicit_bzero(secret, strlen(secret));
                free(secret);
                store_result_free(res);
                return r < 0 ? r : -EIO;
        }
        *id = store_int(res, 0, 0);
        *token = secret;
        store_result_free(res);
        return 0;
}

int auth_operator_token_create(struct store *db, const char *name, const char *role,
                               const char *created_by, char **token, int64_t *id) {
        if (auth_role_parse(role) == AUTH_ROLE_NONE)
                return -EINVAL;
        return create(db, AUTH_TOKEN_OPERATOR, role, name, created_by, token, id);
}

int auth_agent_token_create(struct store *db, const char *datacenter_id, const char *name,
                            const char *created_by, char **token, int64_t *id) {
        const char *params[1] = { datacenter_id };
        struct store_result *res = NULL;
        int r;

        if (!datacenter_id || !name || !*name || strlen(name) > 128)
                return -EINVAL;
        r = store_exec(db, "SELECT 1 FROM datacenters WHERE id = $1", 1, params, &res);
        if (r < 0)
                return r;
        r = store_rows(res) == 1 ? 0 : -ENOENT;
        store_result_free(res);
        if (r < 0)
                return r;
        return create(db, AUTH_TOKEN_AGENT, datacenter_id, name, created_by, token, id);
}
