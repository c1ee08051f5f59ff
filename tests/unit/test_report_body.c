/* The body reader (report_body_*): Jansson's acceptance, report_from_json's errors, the record. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report/report.h"
#include "tap.h"

/* 2026-11-25T19:00:00Z */
#define NOW_MS 1795633200000LL

static const struct report_limits limits = { NOW_MS, 300 * 1000 };

#define GOOD                                                                          \
        "{\"device_id\":\"d-7\",\"user_id\":\"u-42\",\"lat\":48.8566,\"lon\":2.3522," \
        "\"accuracy_m\":25,\"ts\":\"2026-11-25T19:00:00Z\"}"

/* 0 when the body parses, as Jansson (as ingest calls it) says it should. */
static int parse(const char *text, size_t len) {
        struct report_body b;
        char why[160];
        json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
        int r = report_body_parse(&b, text, len, why, sizeof(why));

        report_body_fini(&b);
        if ((r == 0) != (doc != NULL)) {
                json_decref(doc);
                return -EDOM; /* they disagree */
        }
        json_decref(doc);
        return r;
}

#define ACCEPTED(text) CHECK(parse(text, strlen(text)) == 0)
#define REFUSED(text) CHECK(parse(text, strlen(text)) == -EBADMSG)

TEST(what_jsmn_lets_through_is_refused_as_jansson_refuses_it) {
        ACCEPTED(GOOD);
        ACCEPTED("[" GOOD "," GOOD "]");
        ACCEPTED(" 42 ");
        ACCEPTED("42");
        ACCEPTED("-0.5e+3");
        ACCEPTED("[]");
        ACCEPTED("\"text\"");
        ACCEPTED("{\"a\":{\"b\":[1,true,false,null,\"\\u00e9\\ud83d\\ude00\"]}}");
        REFUSED("");
        REFUSED("   ");
        REFUSED("[1 2]");             /* a comma missing */
        REFUSED("[1,,2]");            /* twice */
        REFUSED("[1,]");              /* trailing */
        REFUSED("{\"a\":1,}");        /* trailing */
        REFUSED("{\"a\" 1}");         /* a colon missing */
        REFUSED("{\"a\":1 \"b\":2}"); /* a comma missing */
        REFUSED("{,\"a\":1}");
        REFUSED("{\"a\":\"b\":\"c\"}");
        REFUSED("{} {}");
        REFUSED("[1] 2");
        REFUSED("tru");
        REFUSED("[nul]");
        REFUSED("[01]");
        REFUSED("[1.]");
        REFUSED("[.5]");
        REFUSED("[1e]");
        REFUSED("[-]");
        REFUSED("[0x10]");
        REFUSED("[1e999]");                /* a real beyond a double */
        REFUSED("[99999999999999999999]"); /* an integer beyond long long */
        ACCEPTED("[1e-999]");              /* underflow is 0 to Jansson too */
        /* At the edges of the range check that converts nothing. */
        ACCEPTED("[-999999999999999999,999999999999999999]");
        ACCEPTED("[9223372036854775807,-9223372036854775808]");
        REFUSED("[9223372036854775808]");
        REFUSED("[-9223372036854775809]");
        {
                /* reals without an exponent: 10^308 is a double, 10^309 is not */
                char big[400] = "[1";
                memset(big + 2, '0', 308);
                strcpy(big + 310, ".5]");
                ACCEPTED(big);
                memmove(big + 3, big + 2, strlen(big + 2) + 1);
                big[2] = '0';
                REFUSED(big);
        }
        REFUSED("[\"\\x\"]");
        REFUSED("[\"\\u12\"]");
        REFUSED("[\"\\u0000\"]");
        REFUSED("[\"\\ud83d\"]");        /* a lone high surrogate */
        REFUSED("[\"\\ude00\"]");        /* a lone low surrogate */
        REFUSED("[\"\\ud83d\\u0041\"]"); /* not a pair */
        REFUSED("[\"tab\there\"]");      /* a control character */
        REFUSED("[\"\xc3\"]");           /* UTF-8 cut short */
        REFUSED("[\"\xc0\xaf\"]");       /* overlong */
        REFUSED("[\"\xed\xa0\x80\"]");   /* a surrogate in UTF-8 */
        REFUSED("{\"a\":1,\"a\":2}");
        REFUSED("{\"lat\":1,\"l\\u0061t\":2}"); /* the same name, escaped */
        REFUSED("[{\"x\":{\"k\":1,\"k\":1}}]"); /* anywhere in the body */
}

TEST(a_nul_byte_is_refused_where_jansson_drops_it) {
        struct report_body b;
        json_t *doc = json_loadb("[1\0]", 4, JSON_DECODE_ANY, NULL);

        CHECK(doc != NULL); /* Jansson reads [1] */
        json_decref(doc);
        CHECK(report_body_parse(&b, "[1\0]", 4, NULL, 0) == -EBADMSG);
        report_body_fini(&b);
}

TEST(deep_nesting_stops_where_jansson_stops) {
        char text[2 * 2049 + 1];

        for (int depth = 2048; depth <= 2049; depth++) {
                memset(text, '[', (size_t)depth);
                memset(text + depth, ']', (size_t)depth);
                CHECK(parse(text, 2 * (size_t)depth) == (depth == 2048 ? 0 : -EBADMSG));
        }
}

TEST(many_members_are_checked_for_duplicates_too) {
        char text[64 * 16 + 16] = "{", member[16];

        for (int i = 0; i < 64; i++) {
                snprintf(member, sizeof(member), "%s\"k%d\":1", i ? "," : "", i);
                strcat(text, member);
        }
        strcat(text, "}");
        CHECK(parse(text, strlen(text)) == 0);
        strcpy(text + strlen(text) - 1, ",\"k17\":2}");
        CHECK(parse(text, strlen(text)) == -EBADMSG);
}

/* The body's first report, with report_from_json's verdict beside it. */
static int first(const char *text, struct report_read *out, struct report_error *err) {
        struct report_body b;
        struct report old;
        struct report_error old_err;
        json_t *doc = json_loads(text, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
        int o, r = report_body_parse(&b, text, strlen(text), NULL, 0);

        if (r == 0)
                r = report_body_next(&b, &limits, out, err);
        report_body_fini(&b);
        o = doc ? report_from_json(json_is_array(doc) ? json_array_get(doc, 0) : doc, &limits, &old,
                                   &old_err)
                : -EBADMSG;
        json_decref(doc);
        if (o != r || (r == -EINVAL && (strcmp(old_err.pointer, err->pointer) ||
                                        strcmp(old_err.detail, err->detail))))
                return -EDOM;
        return r;
}

TEST(reports_get_report_from_json_s_verdicts) {
        struct report_read r;
        struct report_error e;

        CHECK(first(GOOD, &r, &e) == 0);
        CHECK_STR(r.report.device_id, "d-7");
        CHECK(r.report.lat == 48.8566 && r.report.accuracy_m == 25);
        CHECK(r.report.ts_ms == NOW_MS);
        CHECK(first("{\"device_id\":\"d\\u002d7\",\"user_id\":\"u-42\",\"l\\u0061t\":1,\"lon\":2,"
                    "\"accuracy_m\":0,\"ts\":\"2026-11-25T19:00:00Z\"}",
                    &r, &e) == 0);
        CHECK_STR(r.report.device_id, "d-7");
        CHECK(first("{\"device_id\":\"d-7\",\"altitude\":3}", &r, &e) == -EINVAL);
        CHECK_STR(e.pointer, "/altitude");
        CHECK(first("{\"device_id\":\"d-7\",\"user_id\":\"u\\u00e9\"}", &r, &e) == -EINVAL);
        CHECK_STR(e.pointer, "/user_id");
        CHECK(first("{\"device_id\":\"d-7\",\"user_id\":\"u-42\",\"lat\":\"1\"}", &r, &e) ==
              -EINVAL);
        CHECK_STR(e.pointer, "/lat");
        CHECK(first("{\"device_id\":\"d-7\",\"user_id\":\"u-42\",\"lat\":true}", &r, &e) ==
              -EINVAL);
        CHECK(first("{\"device_id\":\"d-7\",\"user_id\":\"u-42\",\"lat\":95,\"lon\":0,"
                    "\"accuracy_m\":1,\"ts\":\"2026-11-25T19:00:00Z\"}",
                    &r, &e) == -EINVAL);
        CHECK_STR(e.pointer, "/lat");
        CHECK(first("[3]", &r, &e) == -EINVAL);
        CHECK_STR(e.pointer, "");
        CHECK(first("{\"device_id\":\"d-7\",\"user_id\":\"u-42\",\"lat\":1,\"lon\":0,"
                    "\"accuracy_m\":1,\"ts\":\"2026-11-25T19:00:00.000000000000000000000000000000"
                    "0000000000000000000000000000000000001Z\"}",
                    &r, &e) == 0);
}

TEST(the_record_keeps_the_numbers_as_they_were_written) {
        const char *text = "{\"device_id\":\"d-7\",\"user_id\":\"u-42\",\"lat\":-0.0,\"lon\":-0,"
                           "\"accuracy_m\":1.50E1,\"ts\":\"2026-11-25T20:00:00.25+01:00\"}";
        char record[512], small[16];
        struct report_body b;
        struct report_read r;
        struct report_error e;
        struct report back;

        CHECK(report_body_parse(&b, text, strlen(text), NULL, 0) == 0);
        CHECK(report_body_next(&b, &limits, &r, &e) == 0);
        r.report.received_ms = NOW_MS + 1;
        CHECK(report_encode_read(&r, record, sizeof(record)) == strlen(record));
        CHECK_STR(record, "{\"device_id\":\"d-7\",\"user_id\":\"u-42\",\"lat\":-0.0,\"lon\":-0,"
                          "\"accuracy_m\":1.50E1,\"ts\":\"2026-11-25T19:00:00.250Z\","
                          "\"received_at\":\"2026-11-25T19:00:00.001Z\"}");
        CHECK(report_decode(record, strlen(record), &back) == 0);
        CHECK(back.lat == 0 && signbit(back.lat) && back.lon == 0 && !signbit(back.lon));
        CHECK(back.accuracy_m == 15 && back.ts_ms == NOW_MS + 250);
        /* Too small a buffer: cut, terminated, and the whole length said. */
        CHECK(report_encode_read(&r, small, sizeof(small)) == strlen(record));
        CHECK(strlen(small) == sizeof(small) - 1);
        report_body_fini(&b);
}

/* Past the inline tokens the tokenizer grows its array and goes on: every report is read. */
TEST(a_batch_of_a_thousand_reports_reads_every_one) {
        static char text[1000 * (sizeof(GOOD) + 1) + 2];
        struct report_body b;
        struct report_read r;
        struct report_error e;
        size_t n = 0;

        text[n++] = '[';
        for (int i = 0; i < 1000; i++) {
                if (i)
                        text[n++] = ',';
                memcpy(text + n, GOOD, sizeof(GOOD) - 1);
                n += sizeof(GOOD) - 1;
        }
        text[n++] = ']';
        CHECK(parse(text, n) == 0);
        CHECK(report_body_parse(&b, text, n, NULL, 0) == 0);
        CHECK(b.is_array && b.n_reports == 1000 && b.n_tokens == 1 + 1000 * 13);
        for (int i = 0; i < 1000; i++) {
                CHECK(report_body_next(&b, &limits, &r, &e) == 0);
                CHECK_STR(r.report.device_id, "d-7");
        }
        report_body_fini(&b);
        /* Cut short inside the last report: refused, however far the tokens went. */
        CHECK(parse(text, n - 2) == -EBADMSG);
}

TAP_MAIN(TAP_TEST(what_jsmn_lets_through_is_refused_as_jansson_refuses_it),
         TAP_TEST(a_nul_byte_is_refused_where_jansson_drops_it),
         TAP_TEST(deep_nesting_stops_where_jansson_stops),
         TAP_TEST(many_members_are_checked_for_duplicates_too),
         TAP_TEST(reports_get_report_from_json_s_verdicts),
         TAP_TEST(the_record_keeps_the_numbers_as_they_were_written),
         TAP_TEST(a_batch_of_a_thousand_reports_reads_every_one))
