/* Token buckets by key: the burst, the refill, a key each, a bounded table. */
#include <stdio.h>

#include "api/bucket.h"
#include "tap.h"

TEST(a_bucket_gives_its_burst_then_refills_at_its_rate) {
        struct api_buckets *b = NULL;
        CHECK(api_buckets_new(2, 5, 16, &b) == 0);
        CHECK(api_buckets_take(b, "d-1", 5, 100.0) == 0);
        /* Empty: one token comes in half a second. */
        CHECK(api_buckets_take(b, "d-1", 1, 100.0) == 0.5);
        CHECK(api_buckets_take(b, "d-1", 1, 100.5) == 0);
        /* Never more than the burst, however long the quiet. */
        CHECK(api_buckets_take(b, "d-1", 5, 1000.0) == 0);
        CHECK(api_buckets_take(b, "d-1", 1, 1000.0) > 0);
        b = api_buckets_free(b);
}

TEST(each_key_has_its_own_bucket) {
        struct api_buckets *b = NULL;
        CHECK(api_buckets_new(1, 3, 16, &b) == 0);
        CHECK(api_buckets_take(b, "d-1", 3, 10.0) == 0);
        CHECK(api_buckets_take(b, "d-1", 1, 10.0) > 0);
        CHECK(api_buckets_take(b, "d-2", 3, 10.0) == 0);
        b = api_buckets_free(b);
}

TEST(a_request_larger_than_the_burst_takes_a_full_bucket) {
        struct api_buckets *b = NULL;
        CHECK(api_buckets_new(1, 3, 16, &b) == 0);
        CHECK(api_buckets_take(b, "d-1", 50, 10.0) == 0);
        CHECK(api_buckets_take(b, "d-1", 50, 10.0) == 3);
        b = api_buckets_free(b);
}

TEST(a_full_table_still_answers_for_every_key) {
        struct api_buckets *b = NULL;
        char key[16];
        CHECK(api_buckets_new(1, 2, 4, &b) == 0);
        for (int i = 0; i < 100; i++) {
                snprintf(key, sizeof(key), "d-%d", i);
                CHECK(api_buckets_take(b, key, 1, 10.0 + i) == 0);
        }
        CHECK(api_buckets_new(1, 2, 0, &b) < 0);
        b = api_buckets_free(b);
}

TAP_MAIN(TAP_TEST(a_bucket_gives_its_burst_then_refills_at_its_rate),
         TAP_TEST(each_key_has_its_own_bucket),
         TAP_TEST(a_request_larger_than_the_burst_takes_a_full_bucket),
         TAP_TEST(a_full_table_still_answers_for_every_key))
