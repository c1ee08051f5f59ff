/*
 * A request body of location reports read in place: jsmn cuts it into
 * tokens (no tree, no allocation for a small body), this file checks what
 * jsmn does not (separators, numbers, literals, string escapes and UTF-8,
 * duplicate members, depth) so that exactly the bodies Jansson refuses are
 * refused, and the reports are validated from the tokens with the rules of
 * report_from_json. Their numbers stay the text they came as, for the Kafka
 * record. The scheduler reads the records back the same way (report_decode).
 */
#include "report/report.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Strict: no bare words. Parent links: closing a container costs its depth,
 * not a scan back over every token before it. */
#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#define JSMN_STATIC
#include <jsmn.h>

static_assert(sizeof(jsmntok_t) == 5 * sizeof(int), "report.h keeps jsmn tokens as 5 ints");

/* Jansson's limit (JSON_PARSER_MAX_DEPTH): deeper bodies are refused alike. */
#define MAX_DEPTH 2048

static jsmntok_t *tokens(const struct report_body *b) {
        return b->tokens;
}

static bool is_ws(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

static int hex(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Four hex digits at p as *out; false, *out untouched, when one is not a digit. */
static bool hex4(const char *p, uint32_t *out) {
        uint32_t v = 0;
        for (int i = 0; i < 4; i++) {
                int d = hex(p[i]);
                if (d < 0)
                        return false;
                v = v << 4 | (uint32_t)d;
        }
        *out = v;
        return true;
}

/* The JSON number grammar; `integer` says whether it has no fraction or exponent. */
static bool number_text(const char *p, const char *end, bool *integer) {
        *integer = true;
        if (p < end && *p == '-')
                p++;
        if (p < end && *p == '0')
                p++;
        else if (p < end && is_digit(*p))
                while (p < end && is_digit(*p))
                        p++;
        else
                return false;
        if (p < end && *p == '.') {
                *integer = false;
                if (++p == end || !is_digit(*p))
                        return false;
                while (p < end && is_digit(*p))
                        p++;
        }
        if (p < end && (*p == 'e' || *p == 'E')) {
                *integer = false;
                if (++p < end && (*p == '+' || *p == '-'))
                        p++;
                if (p == end || !is_digit(*p))
                        return false;
                while (p < end && is_digit(*p))
                        p++;
        }
        return p == end;
}

/*
 * A number's value as Jansson gives it: an integer within long long
 * (converted, so "-0" is 0), or a real that does not overflow. Returns 0 or
 * -ERANGE, -EINVAL (no number) or -ENOMEM.
 */
static int number_value(const char *p, size_t len, double *out) {
        char buf[64], *text = buf, *end;
        bool integer;
        int r = 0;

        if (!number_text(p, p + len, &integer))
                return -EINVAL;
        /* The body need not end in a NUL: the number is copied to end it. */
        if (len >= sizeof(buf) && !(text = malloc(len + 1)))
                return -ENOMEM;
        memcpy(text, p, len);
        text[len] = '\0';
        errno = 0;
        if (integer) {
                long long v = strtoll(text, &end, 10);
                if (errno == ERANGE)
                        r = -ERANGE;
                *out = (double)v;
        } else {
                double v = strtod(text, &end);
                if (errno == ERANGE && isinf(v))
                        r = -ERANGE;
                *out = v;
        }
        if (text != buf)
                free(text);
        return r;
}

/*
 * What number_value says of a number's range, without converting it when its
 * text cannot be out of range: an integer of at most 18 digits fits a long
 * long, and a real without an exponent, shorter than 300 characters, is
 * below 1e300. The scheduler reads every number twice (checked, then read):
 * the check mostly costs no strtod now. Returns 0, -ERANGE, -EINVAL or -ENOMEM.
 */
static int number_check(const char *p, size_t len) {
        bool integer;
        double v;

        if (!number_text(p, p + len, &integer))
                return -EINVAL;
        if (integer ? len - (*p == '-') <= 18
                    : len < 300 && !memchr(p, 'e', len) && !memchr(p, 'E', len))
                return 0;
        return number_value(p, len, &v);
}

/*
 * The length of a well-formed UTF-8 sequence at p (as Jansson checks it: no
 * overlong form, no surrogate, nothing past U+10FFFF), or 0.
 */
static size_t utf8_length(const unsigned char *p, const unsigned char *end) {
        size_t n;
        uint32_t v;

        if (*p < 0x80)
                return 1;
        if (*p >= 0xc2 && *p <= 0xdf)
                n = 2, v = *p & 0x1f;
        else if (*p >= 0xe0 && *p <= 0xef)
                n = 3, v = *p & 0x0f;
        else if (*p >= 0xf0 && *p <= 0xf4)
                n = 4, v = *p & 0x07;
        else
                return 0;
        if ((size_t)(end - p) < n)
                return 0;
        for (size_t i = 1; i < n; i++) {
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
                v = v << 6 | (p[i] & 0x3f);
        }
        if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000) || v > 0x10ffff ||
            (v >= 0xd800 && v <= 0xdfff))
                return 0;
        return n;
}

/* A string's content between its quotes, as Jansson takes it. Returns NULL or why not. */
static const char *string_problem(const char *p, const char *end) {
        while (p < end) {
                unsigned char c = (unsigned char)*p;
                if (c < 0x20)
                        return "control character in a string";
                if (c == '\\') {
                        uint32_t v;
                        if (end - p < 2)
                                return "invalid escape";
                        if (p[1] != 'u') {
                                if (!strchr("\"\\/bfnrt", p[1]))
                                        return "invalid escape";
                                p += 2;
                                continue;
                        }
                        if (end - p < 6 || !hex4(p + 2, &v))
                                return "invalid \\u escape";
                        p += 6;
                        if (v == 0)
                                return "\\u0000 is not allowed";
                        if (v >= 0xdc00 && v <= 0xdfff)
                                return "unpaired low surrogate";
                        if (v >= 0xd800 && v <= 0xdbff) {
                                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || !hex4(p + 2, &v))
                                        return "unpaired high surrogate";
                                if (v < 0xdc00 || v > 0xdfff)
                                        return "invalid surrogate pair";
                                p += 6;
                        }
                        continue;
                }
                size_t n = utf8_length((const unsigned char *)p, (const unsigned char *)end);
                if (n == 0)
                        return "invalid UTF-8 in a string";
                p += n;
        }
        return NULL;
}

/* The next character of a checked string, escapes decoded, as a code point. */
static uint32_t next_char(const char **pp) {
        const unsigned char *p = (const unsigned char *)*pp;
        uint32_t v = 0, low = 0xdc00;

        if (*p == '\\') {
                static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
                if (p[1] != 'u') {
                        *pp += 2;
                        return (unsigned char)to[strchr(from, p[1]) - from];
                }
                /* a checked string: the digits are there, a high surrogate is paired */
                hex4((const char *)p + 2, &v);
                *pp += 6;
                if (v >= 0xd800 && v <= 0xdbff) {
                        hex4(*pp + 2, &low);
                        v = 0x10000 + ((v - 0xd800) << 10) + (low - 0xdc00);
                        *pp += 6;
                }
                return v;
        }
        if (*p < 0x80) {
                *pp += 1;
                return *p;
        }
        size_t n = *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 : 2;
        v = *p & (0x7f >> n);
        for (size_t i = 1; i < n; i++)
                v = v << 6 | (p[i] & 0x3f);
        *pp += n;
        return v;
}

/*
 * A checked string token decoded into UTF-8, at most size - 1 bytes and
 * NUL-terminated. Returns the decoded length, which may exceed what fitted.
 */
static size_t decode(const struct report_body *b, const jsmntok_t *t, char *out, size_t size) {
        const char *p = b->text + t->start, *end = b->text + t->end;
        size_t n = 0;

        while (p < end) {
                uint32_t c = next_char(&p);
                unsigned char u[4];
                size_t k;
                if (c < 0x80)
                        u[0] = (unsigned char)c, k = 1;
                else if (c < 0x800)
                        u[0] = (unsigned char)(0xc0 | c >> 6), u[1] = 0x80 | (c & 0x3f), k = 2;
                else if (c < 0x10000)
                        u[0] = (unsigned char)(0xe0 | c >> 12), u[1] = 0x80 | (c >> 6 & 0x3f),
                        u[2] = 0x80 | (c & 0x3f), k = 3;
                else
                        u[0] = (unsigned char)(0xf0 | c >> 18), u[1] = 0x80 | (c >> 12 & 0x3f),
                        u[2] = 0x80 | (c >> 6 & 0x3f), u[3] = 0x80 | (c & 0x3f), k = 4;
                for (size_t i = 0; i < k; i++, n++)
                        if (n + 1 < size)
                                out[n] = (char)u[i];
        }
        if (size)
                out[n < size ? n : size - 1] = '\0';
        return n;
}

/* Two checked strings compared by their decoded characters. */
static int compare_strings(const char *text, const jsmntok_t *a, const jsmntok_t *b) {
        const char *p = text + a->start, *pe = text + a->end;
        const char *q = text + b->start, *qe = text + b->end;

        while (p < pe && q < qe) {
                uint32_t x = next_char(&p), y = next_char(&q);
                if (x != y)
                        return x < y ? -1 : 1;
        }
        return (p < pe) - (q < qe);
}

static int compare_keys(const void *x, const void *y, void *ctx) {
        const struct report_body *b = ctx;
        return compare_strings(b->text, &tokens(b)[*(const unsigned *)x],
                               &tokens(b)[*(const unsigned *)y]);
}

/* Whether an object (its keys' token indices) names a member twice. -ENOMEM is possible. */
static int duplicate_keys(const struct report_body *b, const unsigned *keys, size_t n) {
        enum { PAIRWISE = 8 };
        unsigned *sorted;
        int r = 0;

        if (n <= PAIRWISE) {
                for (size_t i = 0; i < n; i++)
                        for (size_t j = i + 1; j < n; j++)
                                if (!compare_strings(b->text, &tokens(b)[keys[i]],
                                                     &tokens(b)[keys[j]]))
                                        return 1;
                return 0;
        }
        /* Only bodies that are no report have this many members: sorting is fine. */
        sorted = malloc(n * sizeof(*sorted));
        if (!sorted)
                return -ENOMEM;
        memcpy(sorted, keys, n * sizeof(*sorted));
        qsort_r(sorted, n, sizeof(*sorted), compare_keys, (void *)b);
        for (size_t i = 1; i < n && !r; i++)
                r = compare_keys(&sorted[i - 1], &sorted[i], (void *)b) == 0;
        free(sorted);
        return r;
}

struct walk {
        struct report_body *b;
        size_t pos; /* in the text */
        unsigned tok;
        const char *why;
};

static void skip_ws(struct walk *w) {
        while (w->pos < w->b->len && is_ws(w->b->text[w->pos]))
                w->pos++;
}

static bool expect(struct walk *w, char c) {
        skip_ws(w);
        if (w->pos < w->b->len && w->b->text[w->pos] == c) {
                w->pos++;
                return true;
        }
        return false;
}

static int fail_walk(struct walk *w, const char *why) {
        w->why = why;
        return -EBADMSG;
}

/*
 * Checks the value whose token is next, and that the text agrees with the
 * tokens: only whitespace and the right separators between them. Returns 0,
 * -EBADMSG (w->why says why) or -ENOMEM.
 */
static int check_value(struct walk *w, int depth) {
        struct report_body *b = w->b;
        const jsmntok_t *t;
        size_t begin;
        int r;

        skip_ws(w);
        if (w->tok >= b->n_tokens)
                return fail_walk(w, "a value expected");
        t = &tokens(b)[w->tok];
        begin = t->type == JSMN_STRING ? (size_t)t->start - 1 : (size_t)t->start;
        if (begin != w->pos)
                return fail_walk(w, "unexpected character");
        w->tok++;
        switch (t->type) {
        case JSMN_PRIMITIVE: {
                const char *p = b->text + t->start;
                size_t len = (size_t)(t->end - t->start);
                if ((len == 4 && !memcmp(p, "true", 4)) || (len == 5 && !memcmp(p, "false", 5)) ||
                    (len == 4 && !memcmp(p, "null", 4)))
                        ;
                else if ((r = number_check(p, len)) == -ERANGE)
                        return fail_walk(w, "a number out of range");
                else if (r == -ENOMEM)
                        return r;
                else if (r < 0)
                        return fail_walk(w, "invalid literal or number");
                w->pos = (size_t)t->end;
                return 0;
        }
        case JSMN_STRING: {
                const char *why = string_problem(b->text + t->start, b->text + t->end);
                if (why)
                        return fail_walk(w, why);
                w->pos = (size_t)t->end + 1;
                return 0;
        }
        case JSMN_OBJECT:
        case JSMN_ARRAY: {
                bool object = t->type == JSMN_OBJECT;
                char close = object ? '}' : ']';
                unsigned inline_keys[8], *keys = inline_keys;
                size_t n_keys = 0, cap = 8;

                if (depth + 1 > MAX_DEPTH)
                        return fail_walk(w, "nested too deeply");
                w->pos++;
                r = 0;
                if (!expect(w, close)) {
                        do {
                                if (object) {
                                        skip_ws(w);
                                        if (w->tok >= b->n_tokens ||
                                            tokens(b)[w->tok].type != JSMN_STRING) {
                                                r = fail_walk(w, "a member's name expected");
                                                break;
                                        }
                                        if (n_keys == cap) {
                                                unsigned *more = malloc(2 * cap * sizeof(*more));
                                                if (!more) {
                                                        r = -ENOMEM;
                                                        break;
                                                }
                                                memcpy(more, keys, n_keys * sizeof(*keys));
                                                if (keys != inline_keys)
                                                        free(keys);
                                                keys = more;
                                                cap *= 2;
                                        }
                                        keys[n_keys++] = w->tok;
                                        if ((r = check_value(w, depth + 1)) < 0)
                                                break;
                                        if (!expect(w, ':')) {
                                                r = fail_walk(w, "':' expected");
                                                break;
                                        }
                                }
                                if ((r = check_value(w, depth + 1)) < 0)
                                        break;
                        } while (expect(w, ','));
                        if (r == 0 && !expect(w, close))
                                r = fail_walk(w, object ? "',' or '}' expected"
                                                        : "',' or ']' expected");
                }
                if (r == 0 && w->pos != (size_t)t->end)
                        r = fail_walk(w, "unexpected character");
                if (r == 0 && object) {
                        int d = duplicate_keys(b, keys, n_keys);
                        r = d < 0 ? d : d ? fail_walk(w, "a member named twice") : 0;
                }
                if (keys != inline_keys)
                        free(keys);
                return r;
        }
        default:
                return fail_walk(w, "unexpected token");
        }
}

static void body_error(char *why, size_t why_size, size_t at, const char *what) {
        if (why_size)
                snprintf(why, why_size, "at byte %zu: %s", at, what);
}

int report_body_parse(struct report_body *b, const char *text, size_t len, char *why,
                      size_t why_size) {
        jsmn_parser parser;
        struct walk w = { b, 0, 0, NULL };
        int n, r;

        memset(b, 0, sizeof(*b));
        b->text = text;
        b->len = len;
        b->tokens = b->inline_tokens;
        /* jsmn stops at a NUL: Jansson refuses one. */
        if (memchr(text, '\0', len)) {
                body_error(why, why_size, (size_t)((const char *)memchr(text, '\0', len) - text),
                           "a NUL byte");
                return -EBADMSG;
        }
        jsmn_init(&parser);
        n = jsmn_parse(&parser, text, len, tokens(b), REPORT_BODY_INLINE_TOKENS);
        /* Out of tokens: jsmn goes on from where it stopped, with more
         * (counting them first was a second pass over the whole body). A
         * report takes about a token for 9 bytes; no body has more tokens
         * than bytes. */
        for (size_t cap = REPORT_BODY_INLINE_TOKENS; n == JSMN_ERROR_NOMEM && cap <= len;) {
                size_t more = cap < len / 8 ? len / 8 : cap * 2 < len + 1 ? cap * 2 : len + 1;
                jsmntok_t *grown = b->tokens == b->inline_tokens
                                           ? malloc(more * sizeof(jsmntok_t))
                                           : realloc(b->tokens, more * sizeof(jsmntok_t));
                if (!grown)
                        return -ENOMEM;
                if (b->tokens == b->inline_tokens)
                        memcpy(grown, b->inline_tokens, sizeof(b->inline_tokens));
                b->tokens = grown;
                cap = more;
                n = jsmn_parse(&parser, text, len, tokens(b), (unsigned)cap);
        }
        if (n == JSMN_ERROR_PART) {
                /* A scalar at the very end is "partial" to strict jsmn: check it here. */
                size_t a = 0, z = len;
                bool integer;
                while (a < z && is_ws(text[a]))
                        a++;
                while (z > a && is_ws(text[z - 1]))
                        z--;
                if (z > a && (number_text(text + a, text + z, &integer) ||
                              (z - a == 4 && !memcmp(text + a, "true", 4)) ||
                              (z - a == 5 && !memcmp(text + a, "false", 5)) ||
                              (z - a == 4 && !memcmp(text + a, "null", 4)))) {
                        double v;
                        if (text[a] != 't' && text[a] != 'f' && text[a] != 'n' &&
                            (r = number_value(text + a, z - a, &v)) < 0) {
                                if (r == -ENOMEM)
                                        return r;
                                body_error(why, why_size, a, "a number out of range");
                                return -EBADMSG;
                        }
                        b->n_reports = 1;
                        b->scalar = true;
                        return 0;
                }
                body_error(why, why_size, len, "the body ends too early");
                return -EBADMSG;
        }
        if (n < 0) {
                body_error(why, why_size, parser.pos, "not JSON");
                return -EBADMSG;
        }
        if (n == 0) {
                body_error(why, why_size, len, "no JSON value");
                return -EBADMSG;
        }
        b->n_tokens = (unsigned)n;
        r = check_value(&w, 0);
        if (r == -ENOMEM)
                return r;
        if (r == 0) {
                skip_ws(&w);
                if (w.pos != len || w.tok != b->n_tokens)
                        r = fail_walk(&w, "one value only");
        }
        if (r < 0) {
                body_error(why, why_size, w.pos, w.why);
                return -EBADMSG;
        }
        b->is_array = tokens(b)[0].type == JSMN_ARRAY;
        b->n_reports = b->is_array ? (size_t)tokens(b)[0].size : 1;
        b->next_tok = b->is_array ? 1 : 0;
        return 0;
}

void report_body_fini(struct report_body *b) {
        if (b->tokens != b->inline_tokens)
                free(b->tokens);
        b->tokens = NULL;
}

/* The token after the value at i and all it holds. */
static unsigned skip(const struct report_body *b, unsigned i) {
        const jsmntok_t *t = tokens(b);
        unsigned j = i + 1;

        if (t[i].type == JSMN_OBJECT || t[i].type == JSMN_ARRAY)
                while (j < b->n_tokens && t[j].start < t[i].end)
                        j++;
        return j;
}

static int fail(struct report_error *err, const char *pointer, const char *detail) {
        if (err) {
                snprintf(err->pointer, sizeof(err->pointer), "%s", pointer);
                snprintf(err->detail, sizeof(err->detail), "%s", detail);
        }
        return -EINVAL;
}

/* fail() at the member `name`: the pointer is written only when asked for. */
static int fail_member(struct report_error *err, const char *name, const char *detail) {
        char pointer[32];

        if (!err)
                return -EINVAL;
        snprintf(pointer, sizeof(pointer), "/%s", name);
        return fail(err, pointer, detail);
}

/* received_at is not here: the API sets it, never the device. */
/* received_at last: the API stamps it, so only a Kafka record may hold it. */
enum member { M_DEVICE_ID, M_USER_ID, M_LAT, M_LON, M_ACCURACY_M, M_TS, M_RECEIVED_AT, N_MEMBERS };
static const char *const member_names[N_MEMBERS] = { "device_id",  "user_id", "lat",        "lon",
                                                     "accuracy_m", "ts",      "received_at" };

static int read_id(const struct report_body *b, const jsmntok_t *t, const char *name,
                   char out[REPORT_ID_MAX + 1], struct report_error *err) {
        char detail[160];
        size_t n;

        if (!t)
                return fail_member(err, name, "is required");
        if (t->type != JSMN_STRING)
                return fail_member(err, name, "must be a string");
        n = decode(b, t, out, REPORT_ID_MAX + 1);
        if (!report_id_valid(out) || n > REPORT_ID_MAX) {
                snprintf(detail, sizeof(detail),
                         "must be 1 to %d characters of letters, digits and -_.:@", REPORT_ID_MAX);
                return fail_member(err, name, detail);
        }
        return 0;
}

static bool is_number(const struct report_body *b, const jsmntok_t *t) {
        char c = b->text[t->start];
        return t->type == JSMN_PRIMITIVE && c != 't' && c != 'f' && c != 'n';
}

static int read_number(const struct report_body *b, const jsmntok_t *t, const char *name,
                       double *out, struct report_number_text *text, struct report_error *err) {
        if (!t)
                return fail_member(err, name, "is required");
        if (!is_number(b, t))
                return fail_member(err, name, "must be a number");
        /* Checked when the body was parsed: in range, so finite. */
        int r = number_value(b->text + t->start, (size_t)(t->end - t->start), out);
        if (r < 0)
                return r == -ENOMEM ? r : fail_member(err, name, "must be a number");
        text->text = b->text + t->start;
        text->len = (size_t)(t->end - t->start);
        return 0;
}

/* A date-time string token to Unix milliseconds. Returns 0, -EINVAL or -ENOMEM. */
static int read_time(const struct report_body *b, const jsmntok_t *t, int64_t *ms) {
        char inline_text[REPORT_TIME_LEN];
        /* Any number of fraction digits is a time: a long one is decoded on the heap. */
        size_t n = (size_t)(t->end - t->start) + 1;
        char *text;
        int e;

        if (t->type != JSMN_STRING)
                return -EINVAL;
        text = n <= sizeof(inline_text) ? inline_text : malloc(n);
        if (!text)
                return -ENOMEM;
        decode(b, t, text, n);
        e = report_parse_time(text, ms);
        if (text != inline_text)
                free(text);
        return e;
}

/* The next report; `record`: a Kafka record, received_at required with it. */
static int next_report(struct report_body *b, const struct report_limits *limits, bool record,
                       struct report_read *out, struct report_error *err) {
        const jsmntok_t *t = tokens(b), *obj, *m[N_MEMBERS] = { 0 };
        struct report *r = &out->report;
        unsigned i;
        int e;

        memset(out, 0, sizeof(*out));
        if (b->scalar || b->next_tok >= b->n_tokens)
                return fail(err, "", "a report must be a JSON object");
        obj = &t[b->next_tok];
        i = b->next_tok + 1;
        b->next_tok = skip(b, b->next_tok);
        if (obj->type != JSMN_OBJECT)
                return fail(err, "", "a report must be a JSON object");

        for (int k = 0; k < obj->size; k++) {
                char key[64];
                size_t n = decode(b, &t[i], key, sizeof(key));
                bool known = false;
                for (int j = 0; j < (record ? N_MEMBERS : M_RECEIVED_AT) && !known; j++)
                        if (n == strlen(member_names[j]) && !strcmp(key, member_names[j])) {
                                m[j] = &t[i + 1];
                                known = true;
                        }
                if (!known) {
                        char pointer[64];
                        snprintf(pointer, sizeof(pointer), "/%.60s", key);
                        return fail(err, pointer, "is not a field of a location report");
                }
                i = skip(b, i + 1);
        }

        if ((e = read_id(b, m[M_DEVICE_ID], "device_id", r->device_id, err)) < 0 ||
            (e = read_id(b, m[M_USER_ID], "user_id", r->user_id, err)) < 0 ||
            (e = read_number(b, m[M_LAT], "lat", &r->lat, &out->lat, err)) < 0 ||
            (e = read_number(b, m[M_LON], "lon", &r->lon, &out->lon, err)) < 0 ||
            (e = read_number(b, m[M_ACCURACY_M], "accuracy_m", &r->accuracy_m, &out->accuracy_m,
                             err)) < 0)
                return e;
        if (r->lat < -90.0 || r->lat > 90.0)
                return fail(err, "/lat", "must be within [-90, 90]");
        if (r->lon < -180.0 || r->lon > 180.0)
                return fail(err, "/lon", "must be within [-180, 180]");
        if (r->accuracy_m < 0.0)
                return fail(err, "/accuracy_m", "must not be negative");

        if (!m[M_TS])
                return fail(err, "/ts", "is required");
        if ((e = read_time(b, m[M_TS], &r->ts_ms)) == -ENOMEM)
                return e;
        if (e < 0)
                return fail(err, "/ts", "must be an RFC 3339 date-time, e.g. 2026-11-25T19:00:00Z");
        if (limits && r->ts_ms > limits->now_ms + limits->max_future_ms)
                return fail(err, "/ts", "lies too far in the future: check the device's clock");
        if (record) {
                if (!m[M_RECEIVED_AT])
                        return fail(err, "/received_at", "is required");
                if ((e = read_time(b, m[M_RECEIVED_AT], &r->received_ms)) == -ENOMEM)
                        return e;
                if (e < 0)
                        return fail(err, "/received_at", "must be an RFC 3339 date-time");
        }
        return 0;
}

int report_body_next(struct report_body *b, const struct report_limits *limits,
                     struct report_read *out, struct report_error *err) {
        return next_report(b, limits, false, out, err);
}

/* The scheduler's reading of a record: tokens, as the ingest reads a body. */
int report_decode_read(const char *text, size_t len, struct report_read *out) {
        struct report_body b;
        struct report_read read;
        int r;

        r = report_body_parse(&b, text, len, NULL, 0);
        if (r == 0 && (b.is_array || b.scalar))
                r = -EINVAL;
        if (r == 0)
                r = next_report(&b, NULL, true, &read, NULL);
        report_body_fini(&b);
        if (r < 0)
                return r == -ENOMEM ? r : -EINVAL;
        *out = read;
        return 0;
}

int report_decode(const char *text, size_t len, struct report *out) {
        struct report_read read;
        int r = report_decode_read(text, len, &read);

        if (r == 0)
                *out = read.report;
        return r;
}
