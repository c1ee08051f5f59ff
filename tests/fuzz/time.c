/*
 * RFC 3339 date-times: report_parse_time and report_format_time.
 *
 * Properties, for every text the parser accepts:
 *  - parse → format → parse gives the same instant, and formatting that
 *    instant again gives the same text (the formatter's output is a fixed
 *    point);
 *  - the instant equals an independent computation from the fields
 *    (days from the civil date, the offset, milliseconds truncated);
 *  - a leap second (:60) is accepted only as 23:59:60 UTC.
 * And for every instant in the range the parser accepts (0 to
 * 9999-12-31T23:59:59.999Z), format → parse gives it back.
 */
#include <ctype.h>

#include "fuzz.h"
#include "report/report.h"

#define MAX_MS 253402300799999LL /* 9999-12-31T23:59:59.999Z */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d) {
        y -= m <= 2;
        int64_t era = (y >= 0 ? y : y - 399) / 400;
        int64_t yoe = y - era * 400;
        int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
}

static int num(const char *s, int n) {
        int v = 0;
        for (int i = 0; i < n; i++)
                v = v * 10 + (s[i] - '0');
        return v;
}

/* The instant of an accepted text, from its fields; *second gets its seconds field. */
static int64_t reference_ms(const char *s, int *second, int *utc_minute_of_day) {
        int64_t days = days_from_civil(num(s, 4), num(s + 5, 2), num(s + 8, 2));
        int hour = num(s + 11, 2), minute = num(s + 14, 2), sec = num(s + 17, 2);
        int64_t ms = 0, scale = 100, offset_s = 0;
        const char *p = s + 19;

        if (*p == '.')
                for (p++; isdigit((unsigned char)*p); p++, scale /= 10)
                        ms += (*p - '0') * scale;
        if (*p == '+' || *p == '-')
                offset_s = (*p == '-' ? -1 : 1) * (num(p + 1, 2) * 3600 + num(p + 4, 2) * 60);
        *second = sec;
        int64_t minute_start = (days * 86400 + hour * 3600 + minute * 60) - offset_s;
        *utc_minute_of_day = (int)(((minute_start % 86400) + 86400) % 86400 / 60);
        return (minute_start + sec) * 1000 + ms;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *text = fuzz_strndup(data, size), formatted[REPORT_TIME_LEN], again[REPORT_TIME_LEN];
        int64_t ms, ms2;
        struct fuzz_bytes b = { data, size };

        if (report_parse_time(text, &ms) == 0) {
                int second, minute_of_day;
                int64_t want = reference_ms(text, &second, &minute_of_day);

                FUZZ_CHECK(ms == want);
                FUZZ_CHECK(second < 60 || minute_of_day == 23 * 60 + 59);
                FUZZ_CHECK(ms >= 0 && ms <= MAX_MS);
                report_format_time(ms, formatted);
                if (report_parse_time(formatted, &ms2) != 0 || ms2 != ms)
                        fprintf(stderr, "'%s' is %lld ms, formatted '%s'\n", text, (long long)ms,
                                formatted);
                FUZZ_CHECK(report_parse_time(formatted, &ms2) == 0);
                FUZZ_CHECK(ms2 == ms);
                report_format_time(ms2, again);
                FUZZ_CHECK(!strcmp(again, formatted));
        }
        free(text);

        /* Any instant the parser can produce survives format → parse. */
        ms = (int64_t)(fuzz_u64(&b) % (MAX_MS + 1));
        report_format_time(ms, formatted);
        FUZZ_CHECK(report_parse_time(formatted, &ms2) == 0 && ms2 == ms);
        return 0;
}
