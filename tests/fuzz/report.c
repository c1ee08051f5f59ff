/*
 * The location report as the API reads it (report_from_json on each object
 * of a body) and as the scheduler reads it back from Kafka (report_decode).
 *
 * Properties: nothing crashes or leaks; an accepted report is within its
 * bounds (ids of the report alphabet, lat/lon in range, accuracy >= 0); and
 * what the API accepts, encoded for Kafka, the scheduler decodes to exactly
 * the same report (ids, numbers to the bit, times to the millisecond).
 */
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct report r;
        json_t *body;

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
