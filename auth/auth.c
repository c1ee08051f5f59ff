/*
 * Device tokens (HMAC-SHA-256, rotating keys), operator tokens (random,
 * stored as SHA-256), roles. See auth.h for the formats. The primitives come
 * from Nettle and GnuTLS; this file only arranges them.
 */
#include "auth/auth.h"

#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <jansson.h>
#include <nettle/base64.h>
#include <nettle/hmac.h>
#include <nettle/memops.h>
#include <nettle/sha2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

/* Strict: no bare words. */
#define JSMN_STRICT
#define JSMN_STATIC
#include <jsmn.h>

#define KEY_MIN_BYTES 32
#define KEY_MAX_BYTES 128
#define SECRET_BYTES 32

/* ---- roles ---------------------------------------------------------------- */

static const char *const role_names[] = { "none", "viewer", "operator", "admin" };

enum auth_role auth_role_parse(const char *name) {
        for (int r = AUTH_ROLE_VIEWER; name && r <= AUTH_ROLE_ADMIN; r++)
                if (!strcmp(name, role_names[r]))
                        return (enum auth_role)r;
        return AUTH_ROLE_NONE;
}

const char *auth_role_name(enum auth_role role) {
        return role >= AUTH_ROLE_NONE && role <= AUTH_ROLE_ADMIN ? role_names[role] : "none";
}

/* ---- helpers ---------------------------------------------------------------- */

bool auth_equal(const void *a, const void *b, size_t n) {
        return memeql_sec(a, b, n) != 0;
}

int auth_random(void *buf, size_t len) {
        return gnutls_rnd(GNUTLS_RND_KEY, buf, len) == 0 ? 0 : -EIO;
}

static int base64_encode_with(void (*init)(struct base64_encode_ctx *), bool pad, const void *data,
                              size_t len, char **out) {
        struct base64_encode_ctx ctx;
        size_t n;
        char *text = malloc(BASE64_ENCODE_LENGTH(len) + BASE64_ENCODE_FINAL_LENGTH + 1);

        if (!text)
                return -ENOMEM;
        init(&ctx);
        n = base64_encode_update(&ctx, text, len, data);
        n += base64_encode_final(&ctx, text + n);
        while (!pad && n > 0 && text[n - 1] == '=')
                n--;
        text[n] = '\0';
        *out = text;
        return 0;
}

int auth_base64url_encode(const void *data, size_t len, char **out) {
        return base64_encode_with(base64url_encode_init, false, data, len, out);
}

/* A base64url character's six bits, or -1. */
static int base64url_value(char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        return c == '-' ? 62 : c == '_' ? 63 : -1;
}

/* Whether all `len` characters are base64url's. */
static bool base64url_text(const char *text, size_t len) {
        for (size_t i = 0; i < len; i++)
                if (base64url_value(text[i]) < 0)
                        return false;
        return true;
}

/*
 * Decodes unpadded base64url into `out`, which has room for
 * BASE64_DECODE_LENGTH(len) bytes: no allocation, so a device token costs
 * none. Returns the number of bytes, or -EINVAL.
 */
static ssize_t base64url_decode_into(const char *text, size_t len, uint8_t *out) {
        static const unsigned stray_bits[4] = { 0, 0, 0xf, 0x3 };
        struct base64_decode_ctx ctx;
        size_t n = 0;

        if (!base64url_text(text, len))
                return -EINVAL;
        /* One encoding per value: stray low bits in the last character would
         * make a second spelling. */
        if (len % 4 == 1 || (len && (unsigned)base64url_value(text[len - 1]) & stray_bits[len % 4]))
                return -EINVAL;
        base64url_decode_init(&ctx);
        if (!base64_decode_update(&ctx, &n, out, len, text))
                return -EINVAL;
        /* Nettle wants whole quanta: put back the padding base64url leaves off. */
        for (size_t i = len; i % 4; i++)
                if (base64_decode_single(&ctx, out + n, '=') < 0)
                        return -EINVAL;
        return base64_decode_final(&ctx) ? (ssize_t)n : -EINVAL;
}

int auth_base64url_decode(const char *text, size_t len, uint8_t **out, size_t *out_len) {
        uint8_t *bytes = malloc(BASE64_DECODE_LENGTH(len) + 1);
        ssize_t n;

        if (!bytes)
                return -ENOMEM;
        if ((n = base64url_decode_into(text, len, bytes)) < 0) {
                free(bytes);
                return (int)n;
        }
        bytes[n] = '\0';
        *out = bytes;
        *out_len = (size_t)n;
        return 0;
}

void auth_sha256_hex(const void *data, size_t len, char out[65]) {
        static const char hex[] = "0123456789abcdef";
        struct sha256_ctx ctx;
        uint8_t digest[SHA256_DIGEST_SIZE];

        sha256_init(&ctx);
        sha256_update(&ctx, len, data);
        sha256_digest(&ctx, sizeof(digest), digest);
        for (size_t i = 0; i < sizeof(digest); i++) {
                out[2 * i] = hex[digest[i] >> 4];
                out[2 * i + 1] = hex[digest[i] & 15];
        }
        out[64] = '\0';
}

bool auth_id_valid(const char *id) {
        size_t n = id ? strlen(id) : 0;

        if (n < 1 || n > AUTH_ID_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = id[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      strchr("-_.:@", c)))
                        return false;
        }
        return true;
}

static bool kid_valid(const char *kid, size_t n) {
        if (n < 1 || n > AUTH_KID_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = kid[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_'))
                        return false;
        }
        return true;
}

/* ---- keyring ----------------------------------------------------------------- */

struct auth_key {
        char kid[AUTH_KID_MAX + 1];
        /* Keyed once (the key's inner and outer states): each token costs only its own blocks. */
        struct hmac_sha256_ctx mac;
};

struct auth_keyring {
        struct auth_key *keys;
        size_t n;
};

struct auth_keyring *auth_keyring_free(struct auth_keyring *ring) {
        if (ring) {
                /* Keys are secrets: leave nothing behind. */
                if (ring->keys)
                        explicit_bzero(ring->keys, ring->n * sizeof(*ring->keys));
                free(ring->keys);
                free(ring);
        }
        return NULL;
}

size_t auth_keyring_size(const struct auth_keyring *ring) {
        return ring ? ring->n : 0;
}

const char *auth_keyring_signing_kid(const struct auth_keyring *ring) {
        return ring && ring->n ? ring->keys[0].kid : NULL;
}

static int key_parse(const char *entry, size_t len, struct auth_key *key, char *err,
                     size_t err_size) {
        const char *colon = memchr(entry, ':', len);
        struct base64_decode_ctx ctx;
        uint8_t *bytes = NULL;
        size_t kid_len, b64_len, n = 0;
        int r = -EINVAL;

        if (!colon || !kid_valid(entry, (size_t)(colon - entry))) {
                snprintf(err, err_size, "a key is kid:base64key, the kid 1 to %d of [A-Za-z0-9_-]",
                         AUTH_KID_MAX);
                return -EINVAL;
        }
        kid_len = (size_t)(colon - entry);
        b64_len = len - kid_len - 1;
        memcpy(key->kid, entry, kid_len);
        key->kid[kid_len] = '\0';
        bytes = malloc(BASE64_DECODE_LENGTH(b64_len) + 1);
        if (!bytes)
                return -ENOMEM;
        base64_decode_init(&ctx);
        if (!base64_decode_update(&ctx, &n, bytes, b64_len, colon + 1) ||
            !base64_decode_final(&ctx)) {
                snprintf(err, err_size, "key '%s' is not base64", key->kid);
        } else if (n < KEY_MIN_BYTES || n > KEY_MAX_BYTES) {
                snprintf(err, err_size, "key '%s' has %zu bytes; keys have %d to %d", key->kid, n,
                         KEY_MIN_BYTES, KEY_MAX_BYTES);
        } else {
                hmac_sha256_set_key(&key->mac, n, bytes);
                r = 0;
        }
        explicit_bzero(bytes, BASE64_DECODE_LENGTH(b64_len));
        free(bytes);
        return r;
}

int auth_keyring_new(const char *spec, struct auth_keyring **out, char *err, size_t err_size) {
        struct auth_keyring *ring = calloc(1, sizeof(*ring));
        size_t entries = 1;
        const char *p;
        int r;

        if (!ring)
                return -ENOMEM;
        if (!spec || !*spec) {
                *out = ring;
                return 0;
        }
        for (p = spec; *p; p++)
                entries += *p == ',';
        ring->keys = calloc(entries, sizeof(*ring->keys));
        if (!ring->keys) {
                free(ring);
                return -ENOMEM;
        }
        for (p = spec; *p;) {
                size_t len = strcspn(p, ",");
                r = key_parse(p, len, &ring->keys[ring->n], err, err_size);
                if (r < 0)
                        goto fail;
                for (size_t i = 0; i < ring->n; i++) {
                        if (!strcmp(ring->keys[i].kid, ring->keys[ring->n].kid)) {
                                snprintf(err, err_size, "kid '%s' appears twice",
                                         ring->keys[i].kid);
                                r = -EINVAL;
                                goto fail;
                        }
                }
                ring->n++;
                p += len;
                if (*p == ',')
                        p++;
        }
        *out = ring;
        return 0;
fail:
        auth_keyring_free(ring);
        return r;
}

static const struct auth_key *keyring_find(const struct auth_keyring *ring, const char *kid,
                                           size_t kid_len) {
        for (size_t i = 0; ring && i < ring->n; i++)
                if (strlen(ring->keys[i].kid) == kid_len &&
                    !memcmp(ring->keys[i].kid, kid, kid_len))
                        return &ring->keys[i];
        return NULL;
}

int auth_key_generate(const char *kid, char **out) {
        uint8_t key[KEY_MIN_BYTES];
        char *b64 = NULL, *entry;
        int r;

        if (!kid || !kid_valid(kid, strlen(kid)))
                return -EINVAL;
        if (auth_random(key, sizeof(key)) < 0)
                return -EIO;
        r = base64_encode_with(base64_encode_init, true, key, sizeof(key), &b64);
        explicit_bzero(key, sizeof(key));
        if (r < 0)
                return r;
        if (asprintf(&entry, "%s:%s", kid, b64) < 0)
                entry = NULL;
        free(b64);
        if (!entry)
                return -ENOMEM;
        *out = entry;
        return 0;
}

/* ---- device tokens ------------------------------------------------------------ */

static void mac_compute(const struct auth_key *key, const char *signed_part, size_t len,
                        uint8_t mac[SHA256_DIGEST_SIZE]) {
        struct hmac_sha256_ctx ctx = key->mac;

        hmac_sha256_update(&ctx, len, (const uint8_t *)signed_part);
        hmac_sha256_digest(&ctx, SHA256_DIGEST_SIZE, mac);
        explicit_bzero(&ctx, sizeof(ctx));
}

int auth_device_token_mint(const struct auth_keyring *ring, const char *device_id,
                           const char *user_id, int64_t exp_s, char **out) {
        const struct auth_key *key;
        uint8_t mac[SHA256_DIGEST_SIZE];
        json_t *payload;
        char *json = NULL, *b64_payload = NULL, *b64_mac = NULL, *signed_part = NULL, *token = NULL;
        int r = -ENOMEM;

        if (!auth_id_valid(device_id) || !auth_id_valid(user_id) || exp_s <= 0)
                return -EINVAL;
        if (!ring || ring->n == 0)
                return -ENOKEY;
        key = &ring->keys[0];
        payload = json_pack("{s:s, s:s, s:I}", "device_id", device_id, "user_id", user_id, "exp",
                            (json_int_t)exp_s);
        json = payload ? json_dumps(payload, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(payload);
        if (!json || auth_base64url_encode(json, strlen(json), &b64_payload) < 0)
                goto out;
        if (asprintf(&signed_part, "v1.%s.%s", key->kid, b64_payload) < 0) {
                signed_part = NULL;
                goto out;
        }
        mac_compute(key, signed_part, strlen(signed_part), mac);
        if (auth_base64url_encode(mac, sizeof(mac), &b64_mac) < 0)
                goto out;
        if (asprintf(&token, "%s.%s", signed_part, b64_mac) < 0)
                goto out;
        *out = token;
        r = 0;
out:
        free(json);
        free(b64_payload);
        free(b64_mac);
        free(signed_part);
        return r;
}

/* Whether token t of the payload is the string `name`. */
static bool claim_is(const char *json, const jsmntok_t *t, const char *name) {
        size_t n = strlen(name);
        return t->type == JSMN_STRING && (size_t)(t->end - t->start) == n &&
               !memcmp(json + t->start, name, n);
}

/* Copies a string claim that must be a valid id (which needs no escapes). */
static bool claim_id(const char *json, const jsmntok_t *t, char out[AUTH_ID_MAX + 1]) {
        size_t n = (size_t)(t->end - t->start);
        if (t->type != JSMN_STRING || n > AUTH_ID_MAX)
                return false;
        memcpy(out, json + t->start, n);
        out[n] = '\0';
        return auth_id_valid(out);
}

/* An integer claim: an optional minus and digits, nothing else. */
static bool claim_integer(const char *json, const jsmntok_t *t, int64_t *out) {
        const char *p = json + t->start;
        char *end;
        if (t->type != JSMN_PRIMITIVE || !(*p == '-' || (*p >= '0' && *p <= '9')))
                return false;
        errno = 0;
        *out = strtoll(p, &end, 10);
        return errno == 0 && end == json + t->end;
}

/*
 * Reads the payload {"device_id": .., "user_id": .., "exp": ..} in any
 * member order, each member once and nothing else. jsmn cuts it in place:
 * a request's token costs no allocation. jsmn checks less than a JSON
 * parser (commas, for one), but only a payload signed with one of our keys
 * comes here: what matters is that it says exactly these three things.
 */
static bool claims_read(const char *json, size_t len, struct auth_device_claims *claims) {
        jsmntok_t t[8];
        jsmn_parser parser;
        bool device = false, user = false, exp = false;
        int n;

        jsmn_init(&parser);
        n = jsmn_parse(&parser, json, len, t, sizeof(t) / sizeof(t[0]));
        if (n != 7 || t[0].type != JSMN_OBJECT || t[0].size != 3)
                return false;
        for (size_t i = (size_t)t[0].end; i < len; i++)
                if (!strchr(" \t\r\n", json[i]))
                        return false;
        for (int k = 1; k < n; k += 2) {
                const jsmntok_t *key = &t[k], *value = &t[k + 1];
                bool ok;
                if (claim_is(json, key, "device_id") && !device)
                        ok = device = claim_id(json, value, claims->device_id);
                else if (claim_is(json, key, "user_id") && !user)
                        ok = user = claim_id(json, value, claims->user_id);
                else if (claim_is(json, key, "exp") && !exp)
                        ok = exp = claim_integer(json, value, &claims->exp_s);
                else
                        ok = false;
                if (!ok)
                        return false;
        }
        return true;
}

int auth_device_token_verify(const struct auth_keyring *ring, const char *token, int64_t now_s,
                             struct auth_device_claims *claims) {
        const char *kid, *payload_b64, *mac_b64, *dot;
        size_t len, kid_len, payload_len, mac_len;
        const struct auth_key *key;
        uint8_t mac[SHA256_DIGEST_SIZE], json[BASE64_DECODE_LENGTH(AUTH_TOKEN_MAX)];
        char expected[BASE64_ENCODE_LENGTH(SHA256_DIGEST_SIZE) + BASE64_ENCODE_FINAL_LENGTH];
        struct base64_encode_ctx ctx;
        ssize_t json_len;
        size_t n;

        len = token ? strnlen(token, AUTH_TOKEN_MAX + 1) : 0;
        if (len == 0 || len > AUTH_TOKEN_MAX || strncmp(token, "v1.", 3) != 0)
                return -EINVAL;
        kid = token + 3;
        if (!(dot = strchr(kid, '.')))
                return -EINVAL;
        kid_len = (size_t)(dot - kid);
        payload_b64 = dot + 1;
        if (!(dot = strchr(payload_b64, '.')))
                return -EINVAL;
        payload_len = (size_t)(dot - payload_b64);
        mac_b64 = dot + 1;
        mac_len = len - (size_t)(mac_b64 - token);
        if (!kid_valid(kid, kid_len) || payload_len == 0 || !base64url_text(mac_b64, mac_len))
                return -EINVAL;

        key = keyring_find(ring, kid, kid_len);
        if (!key)
                return -ENOKEY;
        /* The signature is compared as the one spelling of the MAC we compute. */
        mac_compute(key, token, (size_t)(mac_b64 - 1 - token), mac);
        base64url_encode_init(&ctx);
        n = base64_encode_update(&ctx, expected, sizeof(mac), mac);
        base64_encode_final(&ctx, expected + n);
        if (mac_len != BASE64_ENCODE_RAW_LENGTH(sizeof(mac)) - 1 ||
            !auth_equal(expected, mac_b64, mac_len))
                return -EBADMSG;

        /* Signed by us: now the payload may be read. */
        json_len = base64url_decode_into(payload_b64, payload_len, json);
        if (json_len < 0 || !claims_read((const char *)json, (size_t)json_len, claims))
                return -EINVAL;
        memcpy(claims->kid, kid, kid_len);
        claims->kid[kid_len] = '\0';
        return claims->exp_s > now_s ? 0 : -EKEYEXPIRED;
}

/* ---- operator tokens ------------------------------------------------------------ */

/* A random secret, base64url, after `prefix`. */
static int prefixed_secret_generate(const char *prefix, char **out) {
        uint8_t secret[SECRET_BYTES];
        char *b64 = NULL, *token;
        int r;

        if (auth_random(secret, sizeof(secret)) < 0)
                return -EIO;
        r = auth_base64url_encode(secret, sizeof(secret), &b64);
        explicit_bzero(secret, sizeof(secret));
        if (r < 0)
                return r;
        if (asprintf(&token, "%s%s", prefix, b64) < 0)
                token = NULL;
        explicit_bzero(b64, strlen(b64));
        free(b64);
        if (!token)
                return -ENOMEM;
        *out = token;
        return 0;
}

static bool prefixed_secret_wellformed(const char *prefix, const char *token) {
        size_t len = strlen(prefix), n;

        if (!token || strncmp(token, prefix, len) != 0)
                return false;
        n = strnlen(token + len, 64);
        return n == BASE64_ENCODE_RAW_LENGTH(SECRET_BYTES) - 1 && base64url_text(token + len, n);
}

int auth_operator_token_generate(char **out) {
        return prefixed_secret_generate(AUTH_OPERATOR_PREFIX, out);
}

bool auth_operator_token_wellformed(const char *token) {
        return prefixed_secret_wellformed(AUTH_OPERATOR_PREFIX, token);
}

/* ---- agent tokens and tickets ------------------------------------------------------ */

int auth_agent_token_generate(char **out) {
        return prefixed_secret_generate(AUTH_AGENT_PREFIX, out);
}

bool auth_agent_token_wellformed(const char *token) {
        return prefixed_secret_wellformed(AUTH_AGENT_PREFIX, token);
}

int auth_secret_generate(char **out) {
        return prefixed_secret_generate("", out);
}
