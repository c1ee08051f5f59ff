/* The request texts that are not JSON: Content-Type, If-Match lists, limit, cursors, numbers. */
#include <errno.h>
#include <stdlib.h>

#include "api/parse.h"
#include "tap.h"

TEST(if_match_takes_a_list_and_star_and_compares_strongly) {
        CHECK(api_if_match_names("\"3\"", "\"3\""));
        CHECK(api_if_match_names(" \"1\", \"3\" ,\t\"4\"\t", "\"3\""));
        /* A weak tag never passes If-Match (RFC 9110 13.1.1). */
        CHECK(!api_if_match_names("W/\"3\"", "\"3\""));
        CHECK(!api_if_match_names(" \"1\", W/\"3\" ,\t\"4\"\t", "\"3\""));
        CHECK(api_if_match_names("*", "\"3\""));
        CHECK(!api_if_match_names("\"33\", \"4\"", "\"3\""));
        CHECK(!api_if_match_names("", "\"3\""));
        CHECK(!api_if_match_names(",,, ,", "\"3\""));
}

TEST(limit_is_a_whole_number_from_1_to_500) {
        long v;
        CHECK(api_limit_parse("1", &v) == 0 && v == 1);
        CHECK(api_limit_parse("500", &v) == 0 && v == 500);
        CHECK(api_limit_parse("0", &v) == -EINVAL);
        CHECK(api_limit_parse("501", &v) == -EINVAL);
        CHECK(api_limit_parse("", &v) == -EINVAL);
        CHECK(api_limit_parse("10x", &v) == -EINVAL);
}

TEST(a_cursor_carries_its_key_back) {
        char *cursor = NULL, *key = NULL;
        CHECK(api_cursor_encode("aws-eu-west-3", &cursor) == 0);
        CHECK(api_cursor_decode(cursor, false, &key) == 0);
        CHECK_STR(key, "aws-eu-west-3");
        free(key);
        CHECK(api_cursor_decode(cursor, true, &key) == -EINVAL);
        free(cursor);
        CHECK(api_cursor_encode("-9223372036854775808", &cursor) == 0);
        CHECK(api_cursor_decode(cursor, true, &key) == 0);
        CHECK_STR(key, "-9223372036854775808");
        free(key);
        free(cursor);
        CHECK(api_cursor_decode("", false, &key) == -EINVAL);
        CHECK(api_cursor_decode("AA", false, &key) == -EINVAL); /* a NUL byte */
        CHECK(api_cursor_decode("a+b/", false, &key) == -EINVAL);
}

/* Encodes `key` as a cursor and decodes it as a numeric one. */
static int numeric(const char *key) {
        char *cursor = NULL, *back = NULL;
        int r;
        if (api_cursor_encode(key, &cursor) < 0)
                return -ENOMEM;
        r = api_cursor_decode(cursor, true, &back);
        free(cursor);
        free(back);
        return r;
}

TEST(a_numeric_cursor_is_the_decimal_of_a_bigint_and_nothing_else) {
        /* These passed strtoll, went to PostgreSQL as $2::bigint and came
         * back as 503s, or as another key than the one written ("01"). */
        CHECK(numeric("01") == -EINVAL);
        CHECK(numeric(" 12") == -EINVAL);
        CHECK(numeric("+12") == -EINVAL);
        CHECK(numeric("-0") == -EINVAL);
        CHECK(numeric("9223372036854775808") == -EINVAL);
        CHECK(numeric("-9223372036854775809") == -EINVAL);
        CHECK(numeric("0") == 0);
        CHECK(numeric("12") == 0);
        CHECK(numeric("9223372036854775807") == 0);
}

TEST(json_content_type_allows_parameters_and_any_case) {
        CHECK(api_content_type_is_json("application/json"));
        CHECK(api_content_type_is_json("Application/JSON; charset=utf-8"));
        CHECK(api_content_type_is_json("application/json ;charset=utf-8"));
        CHECK(!api_content_type_is_json(NULL));
        CHECK(!api_content_type_is_json("application/jsonx"));
        CHECK(!api_content_type_is_json("application/problem+json"));
        CHECK(!api_content_type_is_json("text/plain"));
}

TEST(a_query_number_is_finite_and_the_whole_text) {
        double v = 0;
        CHECK(api_number_parse("48.85", &v) == 0 && v == 48.85);
        CHECK(api_number_parse("-180", &v) == 0 && v == -180);
        CHECK(api_number_parse("1e2", &v) == 0 && v == 100);
        CHECK(api_number_parse("", &v) == -EINVAL);
        CHECK(api_number_parse("12abc", &v) == -EINVAL);
        CHECK(api_number_parse("nan", &v) == -EINVAL);
        CHECK(api_number_parse("inf", &v) == -EINVAL);
        CHECK(api_number_parse("1e999", &v) == -EINVAL);
}

TEST(a_serial_id_is_1_to_18_digits) {
        CHECK(api_serial_id_valid("7"));
        CHECK(api_serial_id_valid("999999999999999999"));
        CHECK(!api_serial_id_valid("1000000000000000000"));
        CHECK(!api_serial_id_valid(""));
        CHECK(!api_serial_id_valid("12a"));
        CHECK(!api_serial_id_valid("-1"));
        CHECK(!api_serial_id_valid(" 1"));
}

TAP_MAIN(TAP_TEST(if_match_takes_a_list_and_star_and_compares_strongly),
         TAP_TEST(a_serial_id_is_1_to_18_digits),
         TAP_TEST(json_content_type_allows_parameters_and_any_case),
         TAP_TEST(a_query_number_is_finite_and_the_whole_text),
         TAP_TEST(limit_is_a_whole_number_from_1_to_500), TAP_TEST(a_cursor_carries_its_key_back),
         TAP_TEST(a_numeric_cursor_is_the_decimal_of_a_bigint_and_nothing_else))
