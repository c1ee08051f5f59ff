/*
 * Device tokens and base64url (auth/auth.h).
 *
 * The first byte of the input chooses what the rest is:
 *  0: a token for auth_device_token_verify, against a keyring of two keys;
 *  1: a payload (JSON text, anything) that the target signs itself with the
 *     first key, so that the fuzzer reaches the payload's parser behind the
 *     signature check;
 *  2: a keyring spec for auth_keyring_new;
 *  3: "device_id\nuser_id" to mint a token with and verify.
 * Every input is also given to the base64url decoder and encoder.
 *
 * Properties: no crash or leak; a verified token carries valid ids and a
 * known kid and has not expired; a minted token verifies to its claims;
 * base64url has one spelling per value (decode → encode gives the text back)
 * and encode → decode gives the bytes back.
 */
#include <errno.h>
#include <nettle/hmac.h>

#include "auth/auth.h"
#include "fuzz.h"

/* 32 bytes each: "fuzzing-key-number-one-32-bytes!" and "...two...". */
#define KEYS                                               \
        "k1:ZnV6emluZy1rZXktbnVtYmVyLW9uZS0zMi1ieXRlcyE=," \
        "k2:ZnV6emluZy1rZXktbnVtYmVyLXR3by0zMi1ieXRlcyE="
#define KEY1 "fuzzing-key-number-one-32-bytes!"
#define NOW_S 1795633200

static struct auth_keyring *ring;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        char err[128];
        if (auth_keyring_new(KEYS, &ring, err, sizeof(err)) != 0) {
                fprintf(stderr, "fuzz-auth: %s\n", err);
                abort();
        }
        return 0;
}

static void check_verified(int r, const struct auth_device_claims *c) {
        FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ENOKEY || r == -EBADMSG || r == -EKEYEXPIRED);
        if (r != 0 && r != -EKEYEXPIRED)
                return;
        FUZZ_CHECK(auth_id_valid(c->device_id) && auth_id_valid(c->user_id));
        FUZZ_CHECK(!strcmp(c->kid, "k1") || !strcmp(c->kid, "k2"));
        FUZZ_CHECK(r == 0 ? c->exp_s > NOW_S : c->exp_s <= NOW_S);
}

static void verify(const char *token) {
        struct auth_device_claims c;
        check_verified(auth_device_token_verify(ring, token, NOW_S, &c), &c);
}

/* "v1.k1.<b64(payload)>.<b64(HMAC-SHA-256 with key 1)>" */
static void sign_and_verify(const uint8_t *payload, size_t len) {
        struct hmac_sha256_ctx h;
        uint8_t mac[SHA256_DIGEST_SIZE];
        char *b64 = NULL, *b64_mac = NULL, *signed_part = NULL, *token = NULL;

        FUZZ_CHECK(auth_base64url_encode(payload, len, &b64) == 0);
        FUZZ_CHECK(asprintf(&signed_part, "v1.k1.%s", b64) > 0);
        hmac_sha256_set_key(&h, strlen(KEY1), (const uint8_t *)KEY1);
        hmac_sha256_update(&h, strlen(signed_part), (const uint8_t *)signed_part);
        hmac_sha256_digest(&h, sizeof(mac), mac);
        FUZZ_CHECK(auth_base64url_encode(mac, sizeof(mac), &b64_mac) == 0);
        FUZZ_CHECK(asprintf(&token, "%s.%s", signed_part, b64_mac) > 0);
        verify(token);
        free(b64);
        free(b64_mac);
        free(signed_part);
        free(token);
}

static void mint_and_verify(char *text) {
        char *nl = strchr(text, '\n'), *token = NULL;
        const char *device = text, *user = nl ? nl + 1 : "u-1";
        struct auth_device_claims c;
        int r;

        if (nl)
                *nl = '\0';
        r = auth_device_token_mint(ring, device, user, NOW_S + 60, &token);
        FUZZ_CHECK(r == 0 || r == -EINVAL);
        FUZZ_CHECK((r == 0) == (auth_id_valid(device) && auth_id_valid(user)));
        if (r != 0)
                return;
        FUZZ_CHECK(auth_device_token_verify(ring, token, NOW_S, &c) == 0);
        FUZZ_CHECK(!strcmp(c.device_id, device) && !strcmp(c.user_id, user));
        FUZZ_CHECK(c.exp_s == NOW_S + 60 && !strcmp(c.kid, "k1"));
        FUZZ_CHECK(auth_device_token_verify(ring, token, NOW_S + 60, &c) == -EKEYEXPIRED);
        free(token);
}

static void keyring(const char *spec) {
        struct auth_keyring *k = NULL;
        char err[256] = "";
        int r = auth_keyring_new(spec, &k, err, sizeof(err));

        FUZZ_CHECK(r == 0 || r == -EINVAL);
        FUZZ_CHECK(r == 0 || err[0]);
        if (r == 0) {
                const char *kid = auth_keyring_signing_kid(k);
                FUZZ_CHECK((kid != NULL) == (auth_keyring_size(k) > 0));
        }
        auth_keyring_free(k);
}

static void base64url(const uint8_t *data, size_t size) {
        uint8_t *bytes = NULL;
        char *text = NULL;
        size_t n = 0;

        if (auth_base64url_decode((const char *)data, size, &bytes, &n) == 0) {
                FUZZ_CHECK(bytes[n] == '\0');
                FUZZ_CHECK(auth_base64url_encode(bytes, n, &text) == 0);
                FUZZ_CHECK(strlen(text) == size && !memcmp(text, data, size));
                free(text);
                free(bytes);
        }
        FUZZ_CHECK(auth_base64url_encode(data, size, &text) == 0);
        FUZZ_CHECK(auth_base64url_decode(text, strlen(text), &bytes, &n) == 0);
        FUZZ_CHECK(n == size && !memcmp(bytes, data, size));
        free(text);
        free(bytes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *text;

        base64url(data, size);
        if (size < 1)
                return 0;
        text = fuzz_strndup(data + 1, size - 1);
        switch (data[0] % 4) {
        case 0:
                verify(text);
                break;
        case 1:
                sign_and_verify(data + 1, size - 1);
                break;
        case 2:
                keyring(text);
                break;
        case 3:
                mint_and_verify(text);
                break;
        }
        free(text);
        return 0;
}
