/*
 * Location reports: strict validation on the way in, a stable JSON encoding
 * on Kafka. Times travel as RFC 3339 text on the wire and as Unix
 * milliseconds inside homing.
 */
#include "report/report.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "geo/geo.h"

static int fail(struct report_error *err, const char *pointer, const char *detail) {
        if (err) {
                snprintf(err->pointer, sizeof(err->pointer), "%s", pointer);
                snprintf(err->detail, sizeof(err->detail), "%s", detail);
        }
        return -EINVAL;
}

bool report_id_valid(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n > REPORT_ID_MAX)
                return false;
        for (; *s; s++)
                if (!isalnum((unsigned char)*s) && !strchr("-_.:@", *s))
                        return false;
        return true;
}

static int copy_id(const json_t *obj, const char *name, char out[REPORT_ID_MAX + 1],
                   struct report_error *err) {
        char pointer[32], detail[160];
        const json_t *v = json_object_get(obj, name);

        snprintf(pointer, sizeof(pointer), "/%s", name);
        if (!v)
                return fail(err, pointer, "is required");
        if (!json_is_string(v))
                return fail(err, pointer, "must be a string");
        if (!report_id_valid(json_string_value(v))) {
                snprintf(detail, sizeof(detail),
                         "must be 1 to %d characters of letters, digits and -_.:@", REPORT_ID_MAX);
                return fail(err, pointer, detail);
        }
        strcpy(out, json_string_value(v));
        return 0;
}

static int get_number(const json_t *obj, const char *name, double *out, struct report_error *err) {
        char pointer[32];
        const json_t *v = json_object_get(obj, name);

        snprintf(pointer, sizeof(pointer), "/%s", name);
        if (!v)
                return fail(err, pointer, "is required");
        if (!json_is_number(v))
                return fail(err, pointer, "must be a number");
        *out = json_number_value(v);
        if (!isfinite(*out))
                return fail(err, pointer, "must be finite");
        return 0;
}

/* received_at is not here: the API sets it, never the device. */
static const char *const known_members[] = { "device_id", "user_id",    "lat",
                                             "lon",       "accuracy_m", "ts" };

static int parse_report(const json_t *json, const struct report_limits *limits, struct report *out,
                        struct report_error *err) {
        const char *key;
        json_t *value;
        const json_t *ts;
        int r;

        memset(out, 0, sizeof(*out));
        if (!json_is_object(json))
                return fail(err, "", "a report must be a JSON object");

        json_object_foreach((json_t *)json, key, value) {
                bool known = false;
                for (size_t i = 0; i < sizeof(known_members) / sizeof(known_members[0]); i++)
                        known = known || !strcmp(key, known_members[i]);
                if (!known) {
                        char pointer[64];
                        snprintf(pointer, sizeof(pointer), "/%.60s", key);
                        return fail(err, pointer, "is not a field of a location report");
                }
        }

        if ((r = copy_id(json, "device_id", out->device_id, err)) < 0 ||
            (r = copy_id(json, "user_id", out->user_id, err)) < 0 ||
            (r = get_number(json, "lat", &out->lat, err)) < 0 ||
            (r = get_number(json, "lon", &out->lon, err)) < 0 ||
            (r = get_number(json, "accuracy_m", &out->accuracy_m, err)) < 0)
                return r;
        if (out->lat < -90.0 || out->lat > 90.0)
                return fail(err, "/lat", "must be within [-90, 90]");
        if (out->lon < -180.0 || out->lon > 180.0)
                return fail(err, "/lon", "must be within [-180, 180]");
        if (out->accuracy_m < 0.0)
                return fail(err, "/accuracy_m", "must not be negative");

        ts = json_object_get(json, "ts");
        if (!ts)
                return fail(err, "/ts", "is required");
        if (!json_is_string(ts) || report_parse_time(json_string_value(ts), &out->ts_ms) < 0)
                return fail(err, "/ts", "must be an RFC 3339 date-time, e.g. 2026-11-25T19:00:00Z");
        if (limits && out->ts_ms > limits->now_ms + limits->max_future_ms)
                return fail(err, "/ts", "lies too far in the future: check the device's clock");
        return 0;
}

int report_from_json(const json_t *json, const struct report_limits *limits, struct report *out,
                     struct report_error *err) {
        return parse_report(json, limits, out, err);
}

/* The fewest significant digits, 15 to 17, that read back as exactly x. */
static int digits_for(double x) {
        char buf[32];

        for (int p = 15; p < 17; p++) {
                snprintf(buf, sizeof(buf), "%.*g", p, x);
                if (strtod(buf, NULL) == x)
                        return p;
        }
        return 17;
}

char *report_encode(const struct report *r) {
        char ts[REPORT_TIME_LEN], received[REPORT_TIME_LEN];
        json_t *json;
        char *text;
        int precision;

        report_format_time(r->ts_ms, ts);
        report_format_time(r->received_ms, received);
        json = json_pack("{s:s, s:s, s:f, s:f, s:f, s:s, s:s}", "device_id", r->device_id,
                         "user_id", r->user_id, "lat", r->lat, "lon", r->lon, "accuracy_m",
                         r->accuracy_m, "ts", ts, "received_at", received);
        if (!json)
                return NULL;
        /* Exact, so the scheduler reads what the API accepted, and as short
         * as that allows: usually the 15 digits a person would write. */
        precision = digits_for(r->lat);
        precision = digits_for(r->lon) > precision ? digits_for(r->lon) : precision;
        precision = digits_for(r->accuracy_m) > precision ? digits_for(r->accuracy_m) : precision;
        text = json_dumps(json,
                          JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(precision));
        json_decref(json);
        return text;
}

/* Appends to a bounded buffer; `n` counts what the whole would take. */
struct out {
        char *buf;
        size_t size, n;
};

static void put(struct out *o, const char *text, size_t len) {
        if (o->n < o->size)
                memcpy(o->buf + o->n, text, o->n + len < o->size ? len : o->size - o->n);
        o->n += len;
}

static void put_str(struct out *o, const char *text) {
        put(o, text, strlen(text));
}

size_t report_encode_read(const struct report_read *in, char *buf, size_t size) {
        const struct report *r = &in->report;
        char ts[REPORT_TIME_LEN], received[REPORT_TIME_LEN];
        struct out o = { buf, size, 0 };

        report_format_time(r->ts_ms, ts);
        report_format_time(r->received_ms, received);
        /* The ids need no escaping: their alphabet has no quote or backslash. */
        put_str(&o, "{\"device_id\":\"");
        put_str(&o, r->device_id);
        put_str(&o, "\",\"user_id\":\"");
        put_str(&o, r->user_id);
        put_str(&o, "\",\"lat\":");
        put(&o, in->lat.text, in->lat.len);
        put_str(&o, ",\"lon\":");
        put(&o, in->lon.text, in->lon.len);
        put_str(&o, ",\"accuracy_m\":");
        put(&o, in->accuracy_m.text, in->accuracy_m.len);
        put_str(&o, ",\"ts\":\"");
        put_str(&o, ts);
        put_str(&o, "\",\"received_at\":\"");
        put_str(&o, received);
        put(&o, "\"}", 3); /* with the NUL */
        if (size)
                buf[o.n <= size ? o.n - 1 : size - 1] = '\0';
        return o.n - 1;
}

/* Reads exactly n digits. */
static bool digits(const char **p, int n, int *out) {
        int v = 0;
        for (int i = 0; i < n; i++, (*p)++) {
                if (!isdigit((unsigned char)**p))
                        return false;
                v = v * 10 + (**p - '0');
        }
        *out = v;
        return true;
}

/* Days from 1970-01-01 to a date of the proleptic Gregorian calendar. */
static int64_t days_from_civil(int64_t y, int m, int d) {
        int64_t era, yoe, doy;

        y -= m <= 2;
        era = (y >= 0 ? y : y - 399) / 400;
        yoe = y - era * 400;
        doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        return era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
}

/* The inverse of days_from_civil. */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d) {
        int64_t era, doe, yoe, doy, mp;

        z += 719468;
        era = (z >= 0 ? z : z - 146096) / 146097;
        doe = z - era * 146097;
        yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        mp = (5 * doy + 2) / 153;
        *d = (int)(doy - (153 * mp + 2) / 5 + 1);
        *m = (int)(mp < 10 ? mp + 3 : mp - 9);
        *y = yoe + era * 400 + (*m <= 2);
}

static int days_in_month(int year, int month) {
        static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        return month == 2 && leap ? 29 : days[month - 1];
}

int report_parse_time(const char *text, int64_t *out_ms) {
        const char *p = text;
        int year, month, day, hour, minute, second, off_h = 0, off_m = 0, sign = 0;
        int64_t frac_ms = 0, ms, secs;

        if (!digits(&p, 4, &year) || *p++ != '-' || !digits(&p, 2, &month) || *p++ != '-' ||
            !digits(&p, 2, &day) || (*p != 'T' && *p != 't' && *p != ' ') || !*p++ ||
            !digits(&p, 2, &hour) || *p++ != ':' || !digits(&p, 2, &minute) || *p++ != ':' ||
            !digits(&p, 2, &second))
                return -EINVAL;
        if (*p == '.') {
                int scale = 100, n = 0;
                p++;
                while (isdigit((unsigned char)*p)) {
                        frac_ms += (*p - '0') * scale;
                        scale /= 10;
                        p++;
                        n++;
                }
                if (n == 0)
                        return -EINVAL;
        }
        if (*p == 'Z' || *p == 'z') {
                p++;
        } else if (*p == '+' || *p == '-') {
                sign = *p++ == '-' ? -1 : 1;
                if (!digits(&p, 2, &off_h) || *p++ != ':' || !digits(&p, 2, &off_m) || off_h > 23 ||
                    off_m > 59)
                        return -EINVAL;
        } else {
                return -EINVAL;
        }
        if (*p)
                return -EINVAL;
        if (year < 1970 || month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) ||
            hour > 23 || minute > 59 || second > 60)
                return -EINVAL;
        /* RFC 3339 allows a leap second (60), and leap seconds are inserted
         * only as the last second of a UTC day: 23:59:60Z, or the same
         * instant in another offset. We fold it into the next second. (Which
         * days had one is not checked: that list grows.) */
        if (second == 60) {
                int utc_minute = hour * 60 + minute - sign * (off_h * 60 + off_m);
                if ((utc_minute % 1440 + 1440) % 1440 != 23 * 60 + 59)
                        return -EINVAL;
        }

        /* Arithmetic, not timegm: no time zone is involved. */
        secs = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
        ms = (secs - sign * (off_h * 3600 + off_m * 60)) * 1000 + frac_ms;
        /* Only instants report_format_time writes back as they were read:
         * an offset can move a 1970 or 9999 local time outside that range. */
        if (ms < 0 || ms > REPORT_TIME_MAX_MS)
                return -EINVAL;
        *out_ms = ms;
        return 0;
}

static void put_digits(char *out, int64_t v, int n) {
        for (int i = n - 1; i >= 0; i--, v /= 10)
                out[i] = (char)('0' + v % 10);
}

void report_format_time(int64_t ms, char out[REPORT_TIME_LEN]) {
        /* Floor, not truncation: -500 ms is 23:59:59.500 of the day before. */
        int64_t frac = ((ms % 1000) + 1000) % 1000;
        int64_t secs = (ms - frac) / 1000;
        int64_t days = (secs >= 0 ? secs : secs - 86399) / 86400, in_day = secs - days * 86400;
        int64_t year;
        int month, day;

        civil_from_days(days, &year, &month, &day);
        if (year < 0 || year > 9999) { /* no four digits: snprintf says it as it is */
                snprintf(out, REPORT_TIME_LEN, "%04lld-%02d-%02dT%02d:%02d:%02d.%03dZ",
                         (long long)year, month, day, (int)(in_day / 3600), (int)(in_day / 60 % 60),
                         (int)(in_day % 60), (int)frac);
                return;
        }
        /* Digits by hand, no snprintf: every record formats two of these. */
        memcpy(out, "0000-00-00T00:00:00.000Z", 25);
        put_digits(out, year, 4);
        put_digits(out + 5, month, 2);
        put_digits(out + 8, day, 2);
        put_digits(out + 11, in_day / 3600, 2);
        put_digits(out + 14, in_day / 60 % 60, 2);
        put_digits(out + 17, in_day % 60, 2);
        put_digits(out + 20, frac, 3);
}
