/*
 * hash: FNV-1a 64 gives the published test vectors, the string and byte
 * forms agree, and hash_unit maps onto [0, 1).
 */
#include <stdint.h>
#include <string.h>

#include "base/hash.h"
#include "tap.h"

TEST(fnv1a_matches_the_published_vectors) {
        /* From the FNV reference's test suite (64-bit FNV-1a). */
        CHECK(hash_fnv1a("") == 0xcbf29ce484222325ULL);
        CHECK(hash_fnv1a("a") == 0xaf63dc4c8601ec8cULL);
        CHECK(hash_fnv1a("foobar") == 0x85944171f73967e8ULL);
}

TEST(string_and_bytes_agree) {
        const char *s = "snap-u-0001/homing.locations.v1/3/1234";
        CHECK(hash_fnv1a(s) == hash_fnv1a_bytes(s, strlen(s)));
        CHECK(hash_fnv1a_bytes("a\0b", 3) != hash_fnv1a("a"));
        CHECK(hash_fnv1a("u-1") != hash_fnv1a("u-2"));
}

TEST(unit_is_in_zero_to_one) {
        CHECK(hash_unit(0) == 0.0);
        CHECK(hash_unit(UINT64_MAX) < 1.0 && hash_unit(UINT64_MAX) > 0.9999999);
        CHECK(hash_unit(1ULL << 63) == 0.5);
}

TAP_MAIN(TAP_TEST(fnv1a_matches_the_published_vectors), TAP_TEST(string_and_bytes_agree),
         TAP_TEST(unit_is_in_zero_to_one))
