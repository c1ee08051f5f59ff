/*
 * Content types, If-Match lists, numbers and cursor pagination, as text in
 * and values out. See
 * parse.h; reply.c turns a refusal into the 400 or 412 the client sees.
 */
#include "api/parse.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/auth.h"

#define CURSOR_KEY_MAX 256

bool api_if_match_names(const char *header, const char *etag) {
        size_t len = strlen(etag);

        /* A list of tags or "*". If-Match compares strongly (RFC 9110 13.1.1): a weak
         * tag W/"n" never matches, since our tags promise the very same bytes. */
        for (const char *p = header; *p;) {
                size_t n;
                p += strspn(p, " \t,");
                n = strcspn(p, ",");
                while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
                        n--;
                if ((n == 1 && *p == '*') || (n == len && !memcmp(p, etag, n)))
                        return true;
                p += n;
        }
        return false;
}

int api_limit_parse(const char *text, long *out) {
        char *end;
        long v = strtol(text, &end, 10);

        if (!*text || *end || v < 1 || v > 500)
                return -EINVAL;
        *out = v;
        return 0;
}

int api_cursor_encode(const char *key, char **out) {
        return auth_base64url_encode(key, strlen(key), out);
}

/*
 * The decimal PostgreSQL writes for a bigint, and only that: strtoll alone
 * let " 12", "+12" and "01" through, and numbers past the int64 range that
 * then failed in PostgreSQL's $n::bigint (a 503 for a bad cursor).
 */
static bool canonical_int64(const char *s) {
        char buf[24];
        char *end;
        long long v;

        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno || *end)
                return false;
        snprintf(buf, sizeof(buf), "%lld", v);
        return strcmp(buf, s) == 0;
}

int api_cursor_decode(const char *cursor, bool numeric, char **out) {
        uint8_t *decoded = NULL;
        size_t len = 0;
        int r = auth_base64url_decode(cursor, strlen(cursor), &decoded, &len);
        bool ok;

        if (r == -ENOMEM)
                return r;
        ok = r == 0 && len > 0 && len <= CURSOR_KEY_MAX && strlen((char *)decoded) == len;
        if (ok && numeric)
                ok = canonical_int64((const char *)decoded);
        if (!ok) {
                free(decoded);
                return -EINVAL;
        }
        *out = (char *)decoded;
        return 0;
}

bool api_content_type_is_json(const char *value) {
        size_t n = strlen("application/json");

        if (!value || strncasecmp(value, "application/json", n) != 0)
                return false;
        /* Parameters such as "; charset=utf-8" may follow. */
        return value[n] == '\0' || value[n] == ';' || value[n] == ' ';
}

int api_number_parse(const char *text, double *out) {
        char *end;
        double v;

        if (!*text)
                return -EINVAL;
        v = strtod(text, &end);
        if (*end || !isfinite(v))
                return -EINVAL;
        *out = v;
        return 0;
}

bool api_serial_id_valid(const char *id) {
        size_t n = strlen(id);
        return n >= 1 && n <= 18 && strspn(id, "0123456789") == n;
}
