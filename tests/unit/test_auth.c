/* Device tokens, keyrings, operator tokens and the helpers under them. */
#include <errno.h>
#include <nettle/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "tap.h"

/* Two keys of 32 bytes (standard base64). */
#define KEY_A "ka:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define KEY_B "kb:HxwdHhscGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE="

static struct auth_keyring *ring(const char *spec) {
        struct auth_keyring *r = NULL;
        char err[128];
        if (auth_keyring_new(spec, &r, err, sizeof(err)) < 0)
                printf("# keyring '%s': %s\n", spec, err);
        return r;
}

TEST(a_minted_token_verifies_and_carries_its_claims) {
        struct auth_keyring *r = ring(KEY_A);
        struct auth_device_claims c;
        char *token = NULL;

        CHECK(auth_device_token_mint(r, "d-7", "u-42", 2000000000, &token) == 0);
        CHECK(token && !strncmp(token, "v1.ka.", 6));
        CHECK(auth_device_token_verify(r, token, 1900000000, &c) == 0);
        CHECK_STR(c.device_id, "d-7");
        CHECK_STR(c.user_id, "u-42");
        CHECK_STR(c.kid, "ka");
        CHECK(c.exp_s == 2000000000);
        free(token);
        auth_keyring_free(r);
}

TEST(an_expired_token_is_refused) {
        struct auth_keyring *r = ring(KEY_A);
        struct auth_device_claims c;
        char *token = NULL;

        CHECK(auth_device_token_mint(r, "d-7", "u-42", 1000, &token) == 0);
        CHECK(auth_device_token_verify(r, token, 1000, &c) == -EKEYEXPIRED);
        CHECK(auth_device_token_verify(r, token, 999, &c) == 0);
        free(token);
        auth_keyring_free(r);
}

TEST(a_changed_payload_or_signature_is_refused) {
        struct auth_keyring *r = ring(KEY_A);
        struct auth_device_claims c;
        char *token = NULL, *forged = NULL, *payload = NULL;
        const char *other = "{\"device_id\":\"d-7\",\"exp\":2000000000,\"user_id\":\"u-1\"}";

        CHECK(auth_device_token_mint(r, "d-7", "u-42", 2000000000, &token) == 0);
        /* The same signature over another user's payload. */
        CHECK(auth_base64url_encode(other, strlen(other), &payload) == 0);
        {
                const char *mac = strrchr(token, '.');
                size_t n = strlen("v1.ka.") + strlen(payload) + strlen(mac) + 1;
                forged = malloc(n);
                snprintf(forged, n, "v1.ka.%s%s", payload, mac);
        }
        CHECK(auth_device_token_verify(r, forged, 0, &c) == -EBADMSG);
        /* One character of the signature flipped. */
        token[strlen(token) - 2] = token[strlen(token) - 2] == 'A' ? 'B' : 'A';
        CHECK(auth_device_token_verify(r, token, 0, &c) == -EBADMSG);
        free(token);
        free(forged);
        free(payload);
        auth_keyring_free(r);
}

/* A token for `payload`, signed as homing would sign it with KEY_A. */
static char *signed_token(const char *payload) {
        uint8_t key[32], mac[SHA256_DIGEST_SIZE];
        struct hmac_sha256_ctx ctx;
        char *b64 = NULL, *b64_mac = NULL, *token = NULL;
        size_t n;

        for (size_t i = 0; i < sizeof(key); i++)
                key[i] = (uint8_t)i; /* KEY_A */
        if (auth_base64url_encode(payload, strlen(payload), &b64) < 0)
                return NULL;
        n = strlen("v1.ka.") + strlen(b64) + 1 + 43 + 1;
        token = malloc(n);
        snprintf(token, n, "v1.ka.%s", b64);
        hmac_sha256_set_key(&ctx, sizeof(key), key);
        hmac_sha256_update(&ctx, strlen(token), (const uint8_t *)token);
        hmac_sha256_digest(&ctx, sizeof(mac), mac);
        if (auth_base64url_encode(mac, sizeof(mac), &b64_mac) == 0)
                snprintf(token + strlen(token), n - strlen(token), ".%s", b64_mac);
        free(b64);
        free(b64_mac);
        return token;
}

TEST(a_signed_payload_is_read_in_any_order_and_only_with_its_three_claims) {
        struct auth_keyring *r = ring(KEY_A);
        struct auth_device_claims c;
        const char *good[] = {
                "{\"device_id\":\"d-7\",\"exp\":2000000000,\"user_id\":\"u-42\"}",
                "{\"user_id\":\"u-42\",\"exp\":2000000000,\"device_id\":\"d-7\"}",
                " { \"exp\" : 2000000000 ,\n \"device_id\" : \"d-7\", \"user_id\":\"u-42\" } \n",
        };
        const char *bad[] = {
                "{\"device_id\":\"d-7\",\"device_id\":\"d-8\",\"exp\":2000000000}",
                "{\"device_id\":\"d-7\",\"exp\":2000000000,\"user_id\":\"u-42\",\"x\":1}",
                "{\"device_id\":\"d-7\",\"exp\":2000000000}",
                "{\"device_id\":\"d-7\",\"exp\":2e9,\"user_id\":\"u-42\"}",
                "{\"device_id\":\"d-7\",\"exp\":2000000000.0,\"user_id\":\"u-42\"}",
                "{\"device_id\":\"d-7\",\"exp\":\"2000000000\",\"user_id\":\"u-42\"}",
                "{\"device_id\":\"d-7\",\"exp\":99999999999999999999,\"user_id\":\"u-42\"}",
                "{\"device_id\":\"d 7\",\"exp\":2000000000,\"user_id\":\"u-42\"}",
                "{\"device_id\":\"d\\u002d7\",\"exp\":2000000000,\"user_id\":\"u-42\"}",
                "{\"device_id\":{\"a\":1},\"exp\":2000000000,\"user_id\":\"u-42\"}",
                "{\"device_id\":\"d-7\",\"exp\":2000000000,\"user_id\":\"u-42\"} {}",
                "{\"device_id\":\"d-7\",\"exp\":2000000000,\"user_id\":\"u-42\"}x",
                "[\"device_id\",\"d-7\",\"exp\",2000000000,\"user_id\",\"u-42\"]",
                "{\"device_id\":\"d-7\",\"exp\":2000000000,\"user_id\":\"u-42\"",
        };

        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                char *token = signed_token(good[i]);
                memset(&c, 0, sizeof(c));
                CHECK(auth_device_token_verify(r, token, 0, &c) == 0);
                CHECK_STR(c.device_id, "d-7");
                CHECK_STR(c.user_id, "u-42");
                CHECK(c.exp_s == 2000000000);
                free(token);
        }
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char *token = signed_token(bad[i]);
                int res = auth_device_token_verify(r, token, 0, &c);
                if (res != -EINVAL) {
                        printf("#   '%s' gave %d\n", bad[i], res);
                        CHECK(0);
                }
                free(token);
        }
        auth_keyring_free(r);
}

TEST(keys_rotate_the_first_signs_and_all_verify) {
        struct auth_keyring *old = ring(KEY_A), *both = ring(KEY_B "," KEY_A), *new = ring(KEY_B);
        struct auth_device_claims c;
        char *by_old = NULL, *by_new = NULL;

        CHECK(auth_keyring_size(both) == 2);
        CHECK_STR(auth_keyring_signing_kid(both), "kb");
        CHECK(auth_device_token_mint(old, "d-1", "u-1", 2000000000, &by_old) == 0);
        CHECK(auth_device_token_mint(both, "d-1", "u-1", 2000000000, &by_new) == 0);
        CHECK(!strncmp(by_new, "v1.kb.", 6));
        CHECK(auth_device_token_verify(both, by_old, 0, &c) == 0);
        CHECK(auth_device_token_verify(both, by_new, 0, &c) == 0);
        /* Once ka is retired, its tokens stop working. */
        CHECK(auth_device_token_verify(new, by_old, 0, &c) == -ENOKEY);
        free(by_old);
        free(by_new);
        auth_keyring_free(old);
        auth_keyring_free(both);
        auth_keyring_free(new);
}

TEST(malformed_tokens_are_refused_without_crashing) {
        struct auth_keyring *r = ring(KEY_A);
        struct auth_device_claims c;
        const char *bad[] = { "",
                              "v1",
                              "v1.",
                              "v1.ka",
                              "v1.ka.",
                              "v1.ka..",
                              "v2.ka.e30.AAAA",
                              "v1.ka.e30.AAAA.x",
                              "v1.k a.e30.AAAA",
                              "v1.ka.e30.!!!!",
                              "hop_abc",
                              "v1.ka.e30=.AAAA" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                int res = auth_device_token_verify(r, bad[i], 0, &c);
                if (!(res == -EINVAL || res == -EBADMSG)) {
                        printf("#   '%s' gave %d\n", bad[i], res);
                        CHECK(0);
                }
        }
        CHECK(auth_device_token_verify(r, NULL, 0, &c) == -EINVAL);
        auth_keyring_free(r);
}

TEST(an_empty_keyring_mints_and_verifies_nothing) {
        struct auth_keyring *r = ring("");
        char *token = NULL;
        CHECK(r && auth_keyring_size(r) == 0);
        CHECK(auth_device_token_mint(r, "d-1", "u-1", 2000000000, &token) == -ENOKEY);
        auth_keyring_free(r);
}

TEST(bad_keyrings_are_refused_with_a_reason) {
        struct auth_keyring *r = NULL;
        char err[128];
        static const char twice[] = KEY_A "," KEY_A; /* one kid twice */
        const char *bad[] = {
                "nokid",       ":AAAA", "ka:not base64!",
                "ka:AAECAwQ=", twice,   "k/a:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                err[0] = '\0';
                CHECK(auth_keyring_new(bad[i], &r, err, sizeof(err)) == -EINVAL);
                CHECK(err[0] != '\0');
        }
}

TEST(ids_outside_the_report_alphabet_cannot_be_minted) {
        struct auth_keyring *r = ring(KEY_A);
        char *token = NULL;
        CHECK(auth_device_token_mint(r, "d 1", "u-1", 2000000000, &token) == -EINVAL);
        CHECK(auth_device_token_mint(r, "d-1", "", 2000000000, &token) == -EINVAL);
        CHECK(token == NULL);
        auth_keyring_free(r);
}

TEST(generated_keys_load_into_a_keyring) {
        char *entry = NULL;
        struct auth_keyring *r;
        CHECK(auth_key_generate("k2", &entry) == 0);
        CHECK(entry && !strncmp(entry, "k2:", 3));
        r = ring(entry);
        CHECK(r && auth_keyring_size(r) == 1);
        CHECK(auth_key_generate("bad kid", &entry) == -EINVAL);
        auth_keyring_free(r);
        free(entry);
}

TEST(operator_tokens_are_random_and_well_formed) {
        char *a = NULL, *b = NULL;
        CHECK(auth_operator_token_generate(&a) == 0);
        CHECK(auth_operator_token_generate(&b) == 0);
        CHECK(a && b && strcmp(a, b) != 0);
        CHECK(a && strlen(a) == 4 + 43);
        CHECK(auth_operator_token_wellformed(a));
        CHECK(!auth_operator_token_wellformed("hop_short"));
        CHECK(!auth_operator_token_wellformed("v1.ka.e30.AAAA"));
        free(a);
        free(b);
}

TEST(agent_tokens_and_tickets_are_random_and_told_apart_from_operator_tokens) {
        char *a = NULL, *b = NULL, *ticket = NULL;
        CHECK(auth_agent_token_generate(&a) == 0);
        CHECK(auth_agent_token_generate(&b) == 0);
        CHECK(a && b && strcmp(a, b) != 0);
        CHECK(a && !strncmp(a, "hag_", 4) && strlen(a) == 4 + 43);
        CHECK(auth_agent_token_wellformed(a));
        CHECK(!auth_operator_token_wellformed(a));
        CHECK(!auth_agent_token_wellformed("hag_short"));
        CHECK(auth_secret_generate(&ticket) == 0);
        CHECK(ticket && strlen(ticket) == 43);
        CHECK(ticket && strspn(ticket, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                       "abcdefghijklmnopqrstuvwxyz0123456789-_") == 43);
        free(a);
        free(b);
        CHECK(auth_operator_token_generate(&a) == 0);
        CHECK(!auth_agent_token_wellformed(a));
        free(a);
        free(ticket);
}

TEST(sha256_matches_the_standard_vector) {
        char hex[65];
        auth_sha256_hex("abc", 3, hex);
        CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(base64url_round_trips_and_refuses_other_alphabets) {
        const unsigned char data[] = { 0xfb, 0xff, 0x00, 0x10 };
        char *text = NULL;
        uint8_t *back = NULL;
        size_t n = 0;
        CHECK(auth_base64url_encode(data, sizeof(data), &text) == 0);
        CHECK_STR(text, "-_8AEA");
        CHECK(auth_base64url_decode(text, strlen(text), &back, &n) == 0);
        CHECK(n == sizeof(data) && !memcmp(back, data, n));
        free(back);
        back = NULL;
        CHECK(auth_base64url_decode("+/8AEA", 6, &back, &n) == -EINVAL);
        CHECK(auth_base64url_decode("-_8AEB", 6, &back, &n) == -EINVAL); /* stray low bits */
        free(text);
}

TEST(roles_parse_and_order) {
        CHECK(auth_role_parse("viewer") == AUTH_ROLE_VIEWER);
        CHECK(auth_role_parse("operator") == AUTH_ROLE_OPERATOR);
        CHECK(auth_role_parse("admin") == AUTH_ROLE_ADMIN);
        CHECK(auth_role_parse("root") == AUTH_ROLE_NONE);
        CHECK(auth_role_parse(NULL) == AUTH_ROLE_NONE);
        CHECK(AUTH_ROLE_VIEWER < AUTH_ROLE_OPERATOR && AUTH_ROLE_OPERATOR < AUTH_ROLE_ADMIN);
        CHECK_STR(auth_role_name(AUTH_ROLE_OPERATOR), "operator");
}

TAP_MAIN(TAP_TEST(a_minted_token_verifies_and_carries_its_claims),
         TAP_TEST(an_expired_token_is_refused), TAP_TEST(a_changed_payload_or_signature_is_refused),
         TAP_TEST(a_signed_payload_is_read_in_any_order_and_only_with_its_three_claims),
         TAP_TEST(keys_rotate_the_first_signs_and_all_verify),
         TAP_TEST(malformed_tokens_are_refused_without_crashing),
         TAP_TEST(an_empty_keyring_mints_and_verifies_nothing),
         TAP_TEST(bad_keyrings_are_refused_with_a_reason),
         TAP_TEST(ids_outside_the_report_alphabet_cannot_be_minted),
         TAP_TEST(generated_keys_load_into_a_keyring),
         TAP_TEST(operator_tokens_are_random_and_well_formed),
         TAP_TEST(agent_tokens_and_tickets_are_random_and_told_apart_from_operator_tokens),
         TAP_TEST(sha256_matches_the_standard_vector),
         TAP_TEST(base64url_round_trips_and_refuses_other_alphabets),
         TAP_TEST(roles_parse_and_order))
