/*
 * The location report as the API reads it (report_from_json on each object
 * of a body) and as the scheduler reads it back from Kafka (report_decode).
 *
 * Properties: nothing crashes or leaks; an accepted report is within its
 * bounds (ids of the report alphabet, lat/lon in range, accuracy >= 0); and
 * what the API accepts, encoded for Kafka, the scheduler decodes to exactly
 * the same report (ids, numbers to the bit, times to the millisecond).
 *
 * Differential, while both exist: the API's body reader (report_body_parse,
 * report_body_next: jsmn, no tree) accepts exactly the bodies Jansson does,
 * (but for a NUL byte: see below), and each report exactly as report_from_json does, with the same error or
 * the same report; its record (numbers as their text) decodes to it too.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>

#include "fuzz.h"
#include "report/report.h"

static bool id_ok(const char *s) {
        size_t n = strlen(s);
        if (n < 1 || n > REPORT_ID_MAX)
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                      (*s >= '0' && *s <= '9') || strchr("-_.:@", *s)))
                        return false;
        return true;
}

static void check_bounds(const struct report *r) {
        FUZZ_CHECK(id_ok(r->device_id) && id_ok(r->user_id));
        FUZZ_CHECK(isfinite(r->lat) && r->lat >= -90 && r->lat <= 90);
        FUZZ_CHECK(isfinite(r->lon) && r->lon >= -180 && r->lon <= 180);
        FUZZ_CHECK(isfinite(r->accuracy_m) && r->accuracy_m >= 0);
}

static bool same_number(double a, double b) {
        return a == b && signbit(a) == signbit(b);
}

/* encode → decode gives back `in`. */
static void check_round_trip(const struct report *in) {
        struct report out;
        char *text = report_encode(in);

        FUZZ_CHECK(text != NULL);
        if (report_decode(text, strlen(text), &out) != 0) {
                fprintf(stderr, "encoded report refused on the way back: %s\n", text);
                FUZZ_CHECK(!"the scheduler decodes what the API encoded");
        }
        FUZZ_CHECK(!strcmp(out.device_id, in->device_id) && !strcmp(out.user_id, in->user_id));
        if (!same_number(out.lat, in->lat) || !same_number(out.lon, in->lon) ||
            !same_number(out.accuracy_m, in->accuracy_m))
                fprintf(stderr, "numbers changed: %.17g %.17g %.17g became %s\n", in->lat, in->lon,
                        in->accuracy_m, text);
        FUZZ_CHECK(same_number(out.lat, in->lat));
        FUZZ_CHECK(same_number(out.lon, in->lon));
        FUZZ_CHECK(same_number(out.accuracy_m, in->accuracy_m));
        FUZZ_CHECK(out.ts_ms == in->ts_ms);
        FUZZ_CHECK(out.received_ms == in->received_ms);
        free(text);
}

/* What the API does with one object: validate, stamp received_at, encode. */
static void ingest_one(const json_t *obj) {
        /* 2026-11-25T19:00:00Z, 300 s of skew: the API's defaults. */
        static const struct report_limits limits = { 1795633200000LL, 300 * 1000 };
        struct report r;
        struct report_error err;

        if (report_from_json(obj, &limits, &r, &err) != 0) {
                FUZZ_CHECK(err.pointer[0] == '\0' || err.pointer[0] == '/');
                FUZZ_CHECK(err.detail[0] != '\0');
                return;
        }
        check_bounds(&r);
        FUZZ_CHECK(r.ts_ms <= limits.now_ms + limits.max_future_ms);
        r.received_ms = limits.now_ms;
        check_round_trip(&r);
}

static void check_same_report(const struct report *a, const struct report *b) {
        FUZZ_CHECK(!strcmp(a->device_id, b->device_id) && !strcmp(a->user_id, b->user_id));
        FUZZ_CHECK(same_number(a->lat, b->lat) && same_number(a->lon, b->lon) &&
                   same_number(a->accuracy_m, b->accuracy_m));
        FUZZ_CHECK(a->ts_ms == b->ts_ms && a->received_ms == b->received_ms);
}

/* The body reader against Jansson and report_from_json, on one body. */
static void check_body_reader(const uint8_t *data, size_t size) {
        static const struct report_limits limits = { 1795633200000LL, 300 * 1000 };
        struct report_body b;
        char why[160];
        json_t *doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY,
                                 NULL);
        int r = report_body_parse(&b, (const char *)data, size, why, sizeof(why));

        /* Jansson drops a NUL byte just after a number or literal ("[1\0]" is [1]); the
         * body reader refuses every NUL, as Jansson does elsewhere. */
        if (memchr(data, 0, size)) {
                FUZZ_CHECK(r == -EBADMSG);
                goto out;
        }
        if ((r == 0) != (doc != NULL))
                fprintf(stderr, "Jansson %s, the body reader %s (%s)\n",
                        doc ? "accepts" : "refuses", r == 0 ? "accepts" : "refuses",
                        r == 0 ? "" : why);
        FUZZ_CHECK((r == 0) == (doc != NULL));
        if (r == 0) {
                size_t n = json_is_array(doc) ? json_array_size(doc) : 1;
                FUZZ_CHECK(b.is_array == json_is_array(doc) && b.n_reports == n);
                for (size_t i = 0; i < n; i++) {
                        const json_t *item = json_is_array(doc) ? json_array_get(doc, i) : doc;
                        struct report old;
                        struct report_read got;
                        struct report_error old_err, err;
                        int o = report_from_json(item, &limits, &old, &old_err);
                        int e = report_body_next(&b, &limits, &got, &err);
                        if (o != e || (o < 0 && (strcmp(old_err.pointer, err.pointer) ||
                                                 strcmp(old_err.detail, err.detail))))
                                fprintf(stderr,
                                        "report %zu: report_from_json %d %s %s, the body "
                                        "reader %d %s %s\n",
                                        i, o, o < 0 ? old_err.pointer : "",
                                        o < 0 ? old_err.detail : "", e, e < 0 ? err.pointer : "",
                                        e < 0 ? err.detail : "");
                        FUZZ_CHECK(o == e);
                        if (o < 0) {
                                FUZZ_CHECK(!strcmp(old_err.pointer, err.pointer));
                                FUZZ_CHECK(!strcmp(old_err.detail, err.detail));
                                continue;
                        }
                        check_same_report(&old, &got.report);
                        /* The record with the numbers as their text reads back the same. */
                        got.report.received_ms = limits.now_ms;
                        size_t len = report_encode_read(&got, NULL, 0);
                        char *text = malloc(len + 1);
                        struct report back;
                        FUZZ_CHECK(text && report_encode_read(&got, text, len + 1) == len);
                        FUZZ_CHECK(strlen(text) == len);
                        if (report_decode(text, len, &back) != 0)
                                fprintf(stderr, "record refused on the way back: %s\n", text);
                        FUZZ_CHECK(report_decode(text, len, &back) == 0);
                        check_same_report(&got.report, &back);
                        free(text);
                }
        }
out:
        report_body_fini(&b);
        json_decref(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct report r;
        json_t *body;

        check_body_reader(data, size);

        /* The scheduler's side: any bytes from Kafka. */
        if (report_decode((const char *)data, size, &r) == 0) {
                check_bounds(&r);
                check_round_trip(&r);
        }

        /* The API's side: a body is one report or an array of them. */
        body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
        if (json_is_array(body)) {
                size_t i;
                json_t *item;
                json_array_foreach(body, i, item) ingest_one(item);
        } else if (body) {
                ingest_one(body);
        }
        json_decref(body);
        return 0;
}
