/*
 * homing token: credentials from the command line, for the first minutes of
 * an installation (before any operator token exists) and for provisioning.
 *
 *   homing token key [--kid K]                     a new device-token key entry
 *   homing token device --device D --user U [--ttl 30d]
 *   homing token device --stdin [--ttl 30d]        "device user" lines in,
 *                                                  "device user token" lines out
 *   homing token operator --name N --role R        stores its hash, prints the secret
 *   homing token agent --datacenter ID [--name N]  the same for a datacenter's agent
 *
 * And homing routes: the HTTP routes, who may call them, what they do.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "auth/auth.h"
#include "auth/tokens.h"
#include "base/config.h"
#include "cmd/commands.h"
#include "store/store.h"

static const char usage[] =
        "usage:\n"
        "  homing token key [--kid K]\n"
        "      a new device-token key entry kid:base64key for --device-token-keys\n"
        "      (put the new one first to sign with it; keep the old ones to verify)\n"
        "  homing token device --device D --user U [--ttl 30d] [settings]\n"
        "  homing token device --stdin [--ttl 30d] [settings]\n"
        "      device tokens signed with the first key of --device-token-keys;\n"
        "      --stdin reads \"device user\" lines and prints \"device user token\"\n"
        "  homing token operator --name N --role viewer|operator|admin [settings]\n"
        "      stores a new operator token's hash in PostgreSQL and prints the token\n"
        "      (once: it cannot be shown again)\n"
        "  homing token agent --datacenter ID [--name N] [settings]\n"
        "      stores a new agent token's hash for the agent of datacenter ID and\n"
        "      prints the token (once); the name defaults to agent-ID\n";

struct token_args {
        const char *kid, *device, *user, *ttl, *name, *role, *datacenter;
        int from_stdin;
};

/* Takes our own flags out of argv; what is left goes to config_load. */
static int split_args(int argc, char **argv, struct token_args *t, int *out_argc) {
        static const struct {
                const char *flag;
                size_t offset;
        } flags[] = {
                { "--kid", offsetof(struct token_args, kid) },
                { "--device", offsetof(struct token_args, device) },
                { "--user", offsetof(struct token_args, user) },
                { "--ttl", offsetof(struct token_args, ttl) },
                { "--name", offsetof(struct token_args, name) },
                { "--role", offsetof(struct token_args, role) },
                { "--datacenter", offsetof(struct token_args, datacenter) },
        };
        int n = 1;

        for (int i = 1; i < argc; i++) {
                bool ours = false;
                if (!strcmp(argv[i], "--stdin")) {
                        t->from_stdin = 1;
                        continue;
                }
                for (size_t f = 0; f < sizeof(flags) / sizeof(flags[0]); f++) {
                        size_t len = strlen(flags[f].flag);
                        const char **slot = (const char **)((char *)t + flags[f].offset);
                        if (!strcmp(argv[i], flags[f].flag)) {
                                if (i + 1 >= argc) {
                                        fprintf(stderr, "homing token: %s needs a value\n",
                                                argv[i]);
                                        return -EINVAL;
                                }
                                *slot = argv[++i];
                                ours = true;
                        } else if (!strncmp(argv[i], flags[f].flag, len) && argv[i][len] == '=') {
                                *slot = argv[i] + len + 1;
                                ours = true;
                        }
                        if (ours)
                                break;
                }
                if (!ours)
                        argv[n++] = argv[i];
        }
        *out_argc = n;
        return 0;
}

/* "30d", "12h", "15m", "90s" or seconds. */
static int parse_ttl(const char *text, long long *out) {
        char *end;
        long long v = strtoll(text, &end, 10), unit = 1;

        if (end == text || v <= 0)
                return -EINVAL;
        if (*end == 'd')
                unit = 86400;
        else if (*end == 'h')
                unit = 3600;
        else if (*end == 'm')
                unit = 60;
        else if (*end == 's' || *end == '\0')
                unit = 1;
        else
                return -EINVAL;
        if (*end && end[1])
                return -EINVAL;
        if (v > 3660LL * 86400 / unit)
                return -EINVAL;
        *out = v * unit;
        return 0;
}

static int print_device_token(const struct auth_keyring *ring, const char *device, const char *user,
                              long long exp_s, bool with_ids) {
        char *token = NULL;
        int r = auth_device_token_mint(ring, device, user, exp_s, &token);

        if (r < 0) {
                fprintf(stderr, "homing token: %s %s: %s\n", device, user,
                        r == -EINVAL ? "ids are 1 to 64 letters, digits or -_.:@" : strerror(-r));
                return r;
        }
        if (with_ids)
                printf("%s %s %s\n", device, user, token);
        else
                printf("%s\n", token);
        free(token);
        return 0;
}

static int device_tokens(const struct config *cfg, const struct token_args *t) {
        struct auth_keyring *ring = NULL;
        char err[256], line[512];
        long long ttl = 30 * 86400;
        int r;

        if (t->ttl && parse_ttl(t->ttl, &ttl) < 0) {
                fprintf(stderr,
                        "homing token: --ttl is like 30d, 12h, 15m or 3600 (at most 10 years)\n");
                return 2;
        }
        r = auth_keyring_new(cfg->device_token_keys, &ring, err, sizeof(err));
        if (r < 0 || auth_keyring_size(ring) == 0) {
                fprintf(stderr, "homing token: %s\n",
                        r < 0 ? err
                              : "no keys: set HOMING_DEVICE_TOKEN_KEYS or --device-token-keys "
                                "(homing token key makes one)");
                auth_keyring_free(ring);
                return 2;
        }
        if (!t->from_stdin) {
                if (!t->device || !t->user) {
                        fputs(usage, stderr);
                        auth_keyring_free(ring);
                        return 2;
                }
                r = print_device_token(ring, t->device, t->user, (long long)time(NULL) + ttl,
                                       false);
        } else {
                while (fgets(line, sizeof(line), stdin)) {
                        char device[128], user[128];
                        if (sscanf(line, "%127s %127s", device, user) != 2)
                                continue;
                        r = print_device_token(ring, device, user, (long long)time(NULL) + ttl,
                                               true);
                        if (r < 0)
                                break;
                }
        }
        auth_keyring_free(ring);
        return r < 0 ? 1 : 0;
}

static int operator_token(const struct config *cfg, const struct token_args *t) {
        struct store *db = NULL;
        char *token = NULL;
        int64_t id;
        int r;

        if (!t->name || !t->role || auth_role_parse(t->role) == AUTH_ROLE_NONE) {
                fprintf(stderr, "homing token operator: --name and --role viewer|operator|admin\n");
                return 2;
        }
        if (store_connect(cfg->pg_dsn, &db) < 0)
                return 1;
        r = auth_operator_token_create(db, t->name, t->role, "homing token (command line)", &token,
                                       &id);
        store_free(db);
        if (r < 0) {
                fprintf(stderr, "homing token operator: could not store the token%s\n",
                        r == -EINVAL ? ": the name is 1 to 128 characters" : " (migrated?)");
                return 1;
        }
        printf("%s\n", token);
        fprintf(stderr, "operator token %lld '%s' (%s): shown once, keep it safe\n", (long long)id,
                t->name, t->role);
        explicit_bzero(token, strlen(token));
        free(token);
        return 0;
}

static int agent_token(const struct config *cfg, const struct token_args *t) {
        struct store *db = NULL;
        char *token = NULL, name[160];
        int64_t id;
        int r;

        if (!t->datacenter || !*t->datacenter) {
                fprintf(stderr, "homing token agent: --datacenter ID [--name N]\n");
                return 2;
        }
        snprintf(name, sizeof(name), "%s", t->name ? t->name : "");
        if (!t->name)
                snprintf(name, sizeof(name), "agent-%.64s", t->datacenter);
        if (store_connect(cfg->pg_dsn, &db) < 0)
                return 1;
        r = auth_agent_token_create(db, t->datacenter, name, "homing token (command line)", &token,
                                    &id);
        store_free(db);
        if (r < 0) {
                fprintf(stderr, "homing token agent: could not store the token%s\n",
                        r == -EINVAL   ? ": the name is 1 to 128 characters"
                        : r == -ENOENT ? ": no such datacenter"
                                       : " (migrated?)");
                return 1;
        }
        printf("%s\n", token);
        fprintf(stderr, "agent token %lld '%s' for %s: shown once, keep it safe\n", (long long)id,
                name, t->datacenter);
        explicit_bzero(token, strlen(token));
        free(token);
        return 0;
}

int cmd_token(int argc, char **argv) {
        struct token_args t = { 0 };
        struct config cfg;
        const char *sub = argc > 1 ? argv[1] : NULL;
        int n, r;

        if (!sub || !strcmp(sub, "--help") || !strcmp(sub, "-h")) {
                fputs(usage, sub ? stdout : stderr);
                return sub ? 0 : 2;
        }
        if (split_args(argc - 1, argv + 1, &t, &n) < 0)
                return 2;
        if (!strcmp(sub, "key")) {
                char *entry = NULL;
                r = auth_key_generate(t.kid ? t.kid : "k1", &entry);
                if (r < 0) {
                        fprintf(stderr, "homing token key: --kid is 1 to 32 of [A-Za-z0-9_-]\n");
                        return 2;
                }
                printf("%s\n", entry);
                explicit_bzero(entry, strlen(entry));
                free(entry);
                return 0;
        }
        if (strcmp(sub, "device") != 0 && strcmp(sub, "operator") != 0 &&
            strcmp(sub, "agent") != 0) {
                fprintf(stderr, "homing token: unknown '%s'\n%s", sub, usage);
                return 2;
        }
        r = config_load(&cfg, n, argv + 1, "homing token device|operator|agent [options]");
        if (r != 0)
                return r < 0 ? 2 : 0;
        r = !strcmp(sub, "device")     ? device_tokens(&cfg, &t)
            : !strcmp(sub, "operator") ? operator_token(&cfg, &t)
                                       : agent_token(&cfg, &t);
        config_fini(&cfg);
        return r;
}

int cmd_routes(int argc, char **argv) {
        if (argc > 1) {
                fprintf(stderr, "usage: homing routes\n");
                return 2;
        }
        api_routes_print(stdout);
        return 0;
}
