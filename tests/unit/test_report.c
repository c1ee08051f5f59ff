/* Location reports: what the API accepts, what it refuses and why. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>

#include "report/report.h"
#include "tap.h"

/* 2026-11-25T19:00:00Z */
#define NOW_MS 1795633200000LL

static const struct report_limits limits = { NOW_MS, 300 * 1000 };

static int parse(const char *text, struct report *out, struct report_error *err) {
        json_t *json = json_loads(text, 0, NULL);
        int r;
        if (!json)
                return -EBADMSG;
        r = report_from_json(json, &limits, out, err);
        json_decref(json);
        return r;
}

/* A valid report with one member replaced: "MEMBER" in the template. */
static int parse_with(const char *member, struct report_error *err) {
        char text[512];
        struct report r;
        snprintf(text, sizeof(text), "{\"device_id\": \"d-7\", \"user_id\": \"u-42\", %s}", member);
        return parse(text, &r, err);
}

#define BASE_FIELDS \
        "\"lat\": 48.8566, \"lon\": 2.3522, \"accuracy_m\": 25, \"ts\": \"2026-11-25T19:00:00Z\""

TEST(a_valid_report_is_accepted) {
        struct report r = { 0 };
        struct report_error e;
        CHECK(parse("{\"device_id\": \"d-7\", \"user_id\": \"u-42\", " BASE_FIELDS "}", &r, &e) ==
              0);
        CHECK_STR(r.device_id, "d-7");
        CHECK_STR(r.user_id, "u-42");
        CHECK_NEAR(r.lat, 48.8566, 0);
        CHECK_NEAR(r.lon, 2.3522, 0);
        CHECK_NEAR(r.accuracy_m, 25, 0);
        CHECK(r.ts_ms == NOW_MS);
}

TEST(latitude_out_of_range_is_refused_with_its_pointer) {
        struct report_error e;
        CHECK(parse_with(
                      "\"lat\": 90.0001, \"lon\": 0, \"accuracy_m\": 1, \"ts\": \"2026-11-25T19:00:00Z\"",
                      &e) == -EINVAL);
        CHECK_STR(e.pointer, "/lat");
        CHECK(parse_with(
                      "\"lat\": -90.5, \"lon\": 0, \"accuracy_m\": 1, \"ts\": \"2026-11-25T19:00:00Z\"",
                      &e) == -EINVAL);
        CHECK(parse_with(
                      "\"lat\": 90, \"lon\": 0, \"accuracy_m\": 1, \"ts\": \"2026-11-25T19:00:00Z\"",
                      &e) == 0);
}

TEST(longitude_out_of_range_is_refused_and_both_antimeridians_pass) {
        struct report_error e;
        CHECK(parse_with(
                      "\"lat\": 0, \"lon\": 180.01, \"accuracy_m\": 1, \"ts\": \"2026-11-25T19:00:00Z\"",
                      &e) == -EINVAL);
        CHECK_STR(e.pointer, "/lon");
        CHECK(parse_with(
                      "\"lat\": 0, \"lon\": 180, \"accuracy_m\": 1, \"ts\": \"2026-11-25T19:00:00Z\"",
                      &e) == 0);
        CHECK(parse_with(
                      "\"lat\": 0, \"lon\": -180, \"accuracy_m\": 1, \"ts\": \"2026-11-25T19:00:00Z\"",
                      &e) == 0);
}

TEST(a_string_where_a_number_belongs_is_refused) {
        struct report_error e;
        CHECK(parse_with(
                      "\"lat\": \"48.8\", \"lon\": 2, \"accuracy_m\": 1, \"ts\": \"2026-11-25T19:00:00Z\"",
                      &e) == -EINVAL);
        CHECK_STR(e.pointer, "/lat");
        CHECK_STR(e.detail, "must be a number");
}

TEST(missing_fields_are_named) {
        struct report_error e;
        CHECK(parse_with("\"lat\": 1, \"accuracy_m\": 1, \"ts\": \"2026-11-25T19:00:00Z\"", &e) ==
              -EINVAL);
        CHECK_STR(e.pointer, "/lon");
        CHECK_STR(e.detail, "is required");
        CHECK(parse("{\"user_id\": \"u\", " BASE_FIELDS "}", &(struct report){ 0 }, &e) == -EINVAL);
        CHECK_STR(e.pointer, "/device_id");
}

TEST(a_negative_accuracy_is_refused) {
        struct report_error e;
        CHECK(parse_with(
                      "\"lat\": 1, \"lon\": 1, \"accuracy_m\": -0.5, \"ts\": \"2026-11-25T19:00:00Z\"",
                      &e) == -EINVAL);
        CHECK_STR(e.pointer, "/accuracy_m");
        CHECK(parse_with(
                      "\"lat\": 1, \"lon\": 1, \"accuracy_m\": 0, \"ts\": \"2026-11-25T19:00:00Z\"",
                      &e) == 0);
}

TEST(timestamps_must_parse_and_not_lie_in_the_future) {
        struct report_error e;
        CHECK(parse_with("\"lat\": 1, \"lon\": 1, \"accuracy_m\": 1, \"ts\": \"yesterday\"", &e) ==
              -EINVAL);
        CHECK_STR(e.pointer, "/ts");
        CHECK(parse_with(
                      "\"lat\": 1, \"lon\": 1, \"accuracy_m\": 1, \"ts\": \"2026-02-30T00:00:00Z\"",
                      &e) == -EINVAL);
        CHECK(parse_with("\"lat\": 1, \"lon\": 1, \"accuracy_m\": 1, \"ts\": 1795633200", &e) ==
              -EINVAL);
        /* 300 s of skew is allowed, 301 s is not. */
        CHECK(parse_with(
                      "\"lat\": 1, \"lon\": 1, \"accuracy_m\": 1, \"ts\": \"2026-11-25T19:05:00Z\"",
                      &e) == 0);
        CHECK(parse_with(
                      "\"lat\": 1, \"lon\": 1, \"accuracy_m\": 1, \"ts\": \"2026-11-25T19:05:01Z\"",
                      &e) == -EINVAL);
        CHECK_STR(e.pointer, "/ts");
}

TEST(unknown_members_and_device_set_received_at_are_refused) {
        struct report_error e;
        CHECK(parse_with(BASE_FIELDS ", \"latitude\": 3", &e) == -EINVAL);
        CHECK_STR(e.pointer, "/latitude");
        CHECK(parse_with(BASE_FIELDS ", \"received_at\": \"2026-11-25T19:00:00Z\"", &e) == -EINVAL);
}

TEST(ids_are_bounded_and_plain) {
        struct report_error e;
        struct report r;
        CHECK(parse("{\"device_id\": \"\", \"user_id\": \"u\", " BASE_FIELDS "}", &r, &e) ==
              -EINVAL);
        CHECK(parse("{\"device_id\": \"d 7\", \"user_id\": \"u\", " BASE_FIELDS "}", &r, &e) ==
              -EINVAL);
        CHECK(parse("{\"device_id\": \"d\", \"user_id\": \"0123456789012345678901234567890123456789012345678901234567890123x\", " BASE_FIELDS
                    "}",
                    &r, &e) == -EINVAL);
        CHECK_STR(e.pointer, "/user_id");
        CHECK(parse("{\"device_id\": \"d\", \"user_id\": 42, " BASE_FIELDS "}", &r, &e) == -EINVAL);
}

TEST(rfc3339_offsets_and_fractions) {
        int64_t ms;
        CHECK(report_parse_time("2026-11-25T20:00:00.250+01:00", &ms) == 0);
        CHECK(ms == NOW_MS + 250);
        CHECK(report_parse_time("2026-11-25T14:30:00-04:30", &ms) == 0);
        CHECK(ms == NOW_MS);
        CHECK(report_parse_time("2024-02-29T00:00:00Z", &ms) == 0);
        CHECK(report_parse_time("2025-02-29T00:00:00Z", &ms) == -EINVAL);
        CHECK(report_parse_time("2026-11-25T19:00:00", &ms) == -EINVAL);
        CHECK(report_parse_time("2026-11-25T19:00:00Zjunk", &ms) == -EINVAL);
        CHECK(report_parse_time("2026-11-25T24:00:00Z", &ms) == -EINVAL);
        CHECK(report_parse_time("2026-11-25T19:00:00.Z", &ms) == -EINVAL);
}

TEST(encode_then_decode_gives_the_same_report) {
        struct report in = { "d-7", "u-42", -33.8688, 151.2093, 12.5, NOW_MS + 7, NOW_MS + 900 };
        struct report out = { 0 };
        char *text = report_encode(&in);
        CHECK(text != NULL);
        CHECK(text && report_decode(text, strlen(text), &out) == 0);
        CHECK_STR(out.device_id, in.device_id);
        CHECK_STR(out.user_id, in.user_id);
        CHECK_NEAR(out.lat, in.lat, 1e-12);
        CHECK_NEAR(out.lon, in.lon, 1e-12);
        CHECK_NEAR(out.accuracy_m, in.accuracy_m, 1e-12);
        CHECK(out.ts_ms == in.ts_ms);
        CHECK(out.received_ms == in.received_ms);
        free(text);
        CHECK(report_decode("{\"device_id\": 1}", 16, &out) == -EINVAL);
}

TEST(a_record_is_read_with_its_numbers_as_written) {
        const char *text = "{\"device_id\":\"d\",\"user_id\":\"u\",\"lat\":-33.86880,"
                           "\"lon\":1.5e2,\"accuracy_m\":12,\"ts\":\"2026-11-25T19:00:00Z\","
                           "\"received_at\":\"2026-11-25T19:00:01Z\"}";
        struct report_read r;

        CHECK(report_decode_read(text, strlen(text), &r) == 0);
        CHECK(r.lat.len == 9 && !memcmp(r.lat.text, "-33.86880", 9));
        CHECK(r.lon.len == 5 && !memcmp(r.lon.text, "1.5e2", 5));
        CHECK(r.accuracy_m.len == 2 && !memcmp(r.accuracy_m.text, "12", 2));
        CHECK(r.report.lat == -33.8688 && r.report.lon == 150 && r.report.accuracy_m == 12);
        CHECK(r.lat.text >= text && r.lat.text < text + strlen(text)); /* borrowed */
}

TEST(a_record_is_read_whole_or_refused) {
        struct report out = { 0 };
        const char *ok = "{\"device_id\":\"d\",\"user_id\":\"u\",\"lat\":1,\"lon\":2,"
                         "\"accuracy_m\":3,\"ts\":\"2026-11-25T19:00:00Z\","
                         "\"received_at\":\"2026-11-25T19:00:01Z\"}";
        const char *refused[] = {
                /* received_at missing, or not a time */
                "{\"device_id\":\"d\",\"user_id\":\"u\",\"lat\":1,\"lon\":2,"
                "\"accuracy_m\":3,\"ts\":\"2026-11-25T19:00:00Z\"}",
                "{\"device_id\":\"d\",\"user_id\":\"u\",\"lat\":1,\"lon\":2,"
                "\"accuracy_m\":3,\"ts\":\"2026-11-25T19:00:00Z\",\"received_at\":5}",
                /* a member twice, an unknown one, trailing text, an array of one */
                "{\"device_id\":\"d\",\"user_id\":\"u\",\"lat\":1,\"lat\":1,\"lon\":2,"
                "\"accuracy_m\":3,\"ts\":\"2026-11-25T19:00:00Z\","
                "\"received_at\":\"2026-11-25T19:00:01Z\"}",
                "{\"device_id\":\"d\",\"user_id\":\"u\",\"lat\":1,\"lon\":2,\"alt\":2,"
                "\"accuracy_m\":3,\"ts\":\"2026-11-25T19:00:00Z\","
                "\"received_at\":\"2026-11-25T19:00:01Z\"}",
                "{\"device_id\":\"d\",\"user_id\":\"u\",\"lat\":1,\"lon\":2,"
                "\"accuracy_m\":3,\"ts\":\"2026-11-25T19:00:00Z\","
                "\"received_at\":\"2026-11-25T19:00:01Z\"} x",
                "[{\"device_id\":\"d\",\"user_id\":\"u\",\"lat\":1,\"lon\":2,"
                "\"accuracy_m\":3,\"ts\":\"2026-11-25T19:00:00Z\","
                "\"received_at\":\"2026-11-25T19:00:01Z\"}]",
                "42",
        };

        CHECK(report_decode(ok, strlen(ok), &out) == 0);
        CHECK(out.lat == 1 && out.lon == 2 && out.accuracy_m == 3);
        CHECK(out.received_ms - out.ts_ms == 1000);
        for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
                CHECK(report_decode(refused[i], strlen(refused[i]), &out) == -EINVAL);
}

TEST(every_accepted_time_formats_back_to_the_same_instant) {
        int64_t ms, again;
        char text[REPORT_TIME_LEN];
        /* 1970 local time, but before the epoch in UTC: the formatter wrote
         * "1969-12-31T23:00:01.-500Z" for it, which the parser refuses. */
        CHECK(report_parse_time("1970-01-01T00:00:00.5+01:00", &ms) == -EINVAL);
        CHECK(report_parse_time("9999-12-31T23:00:00-01:00", &ms) == -EINVAL);
        CHECK(report_parse_time("1970-01-01T00:00:00Z", &ms) == 0 && ms == 0);
        CHECK(report_parse_time("1970-01-01T01:00:00.5+01:00", &ms) == 0 && ms == 500);
        CHECK(report_parse_time("9999-12-31T23:59:59.999Z", &ms) == 0);
        report_format_time(ms, text);
        CHECK_STR(text, "9999-12-31T23:59:59.999Z");
        CHECK(report_parse_time(text, &again) == 0 && again == ms);
        /* Before the epoch the formatter still writes a real date-time. */
        report_format_time(-3599500, text);
        CHECK_STR(text, "1969-12-31T23:00:00.500Z");
}

TEST(a_leap_second_is_accepted_only_at_23_59_60_utc) {
        int64_t ms, next;
        CHECK(report_parse_time("2017-01-01T00:00:00Z", &next) == 0);
        /* Folded into the next second: the scheduler's clock has no 60. */
        CHECK(report_parse_time("2016-12-31T23:59:60Z", &ms) == 0 && ms == next);
        CHECK(report_parse_time("2016-12-31T18:59:60-05:00", &ms) == 0 && ms == next);
        CHECK(report_parse_time("2017-01-01T05:29:60+05:30", &ms) == 0 && ms == next);
        /* Any other minute has no second 60. */
        CHECK(report_parse_time("2026-11-25T19:00:60Z", &ms) == -EINVAL);
        CHECK(report_parse_time("2016-12-31T23:59:60+01:00", &ms) == -EINVAL);
        CHECK(report_parse_time("2016-12-31T23:58:60Z", &ms) == -EINVAL);
        CHECK(report_parse_time("2016-12-31T23:59:61Z", &ms) == -EINVAL);
}

TEST(every_accepted_number_reaches_the_scheduler_unchanged) {
        /* Fifteen digits lost the last bits of some coordinates, and turned
         * the largest accuracy the API accepts into one that overflows, so
         * that the scheduler refused the report. */
        struct report in = {
                "d-7",  "u-42",    48.856612345678912, -0.1 - 0.2, 1.7976931348623157e308,
                NOW_MS, NOW_MS + 1
        };
        struct report out = { 0 };
        char *text = report_encode(&in);
        CHECK(text != NULL);
        CHECK(text && report_decode(text, strlen(text), &out) == 0);
        CHECK(out.lat == in.lat);
        CHECK(out.lon == in.lon);
        CHECK(out.accuracy_m == in.accuracy_m);
        free(text);
        /* Numbers that fifteen digits hold exactly keep their short form. */
        in.lat = 48.8566, in.lon = 2.3522, in.accuracy_m = 25;
        text = report_encode(&in);
        CHECK(text && strstr(text, "\"lat\":48.8566,\"lon\":2.3522,\"accuracy_m\":25.0,"));
        free(text);
}

TAP_MAIN(TAP_TEST(a_valid_report_is_accepted),
         TAP_TEST(a_record_is_read_with_its_numbers_as_written),
         TAP_TEST(latitude_out_of_range_is_refused_with_its_pointer),
         TAP_TEST(longitude_out_of_range_is_refused_and_both_antimeridians_pass),
         TAP_TEST(a_string_where_a_number_belongs_is_refused), TAP_TEST(missing_fields_are_named),
         TAP_TEST(a_negative_accuracy_is_refused),
         TAP_TEST(timestamps_must_parse_and_not_lie_in_the_future),
         TAP_TEST(unknown_members_and_device_set_received_at_are_refused),
         TAP_TEST(ids_are_bounded_and_plain), TAP_TEST(rfc3339_offsets_and_fractions),
         TAP_TEST(encode_then_decode_gives_the_same_report),
         TAP_TEST(a_record_is_read_whole_or_refused),
         TAP_TEST(every_accepted_time_formats_back_to_the_same_instant),
         TAP_TEST(a_leap_second_is_accepted_only_at_23_59_60_utc),
         TAP_TEST(every_accepted_number_reaches_the_scheduler_unchanged))
