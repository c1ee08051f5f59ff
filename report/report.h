/*
 * report — a device's location report: the contract between the API (which
 * validates it and puts it on homing.locations.v1) and the scheduler (which
 * reads it back). Parsing is strict: a report is either wholly valid or
 * rejected with the JSON pointer of the first offending field.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/must-check.h"

#define REPORT_ID_MAX 64

struct report {
        char device_id[REPORT_ID_MAX + 1];
        char user_id[REPORT_ID_MAX + 1];
        double lat, lon;     /* WGS84 degrees */
        double accuracy_m;   /* horizontal, metres, >= 0 */
        int64_t ts_ms;       /* the device's clock, Unix milliseconds */
        int64_t received_ms; /* when the API received it; 0 until then */
};

/* Why a report was refused: a JSON pointer and a sentence for a person. */
struct report_error {
        char pointer[64];
        char detail[192];
};

struct report_limits {
        int64_t now_ms;        /* the receiver's clock */
        int64_t max_future_ms; /* how far ahead of now_ms ts may be */
};

struct json_t;

/* Whether `id` is 1 to REPORT_ID_MAX letters, digits and -_.:@. */
bool report_id_valid(const char *id);

/*
 * Validates one JSON object as a report. `json` is borrowed. Returns 0 and
 * fills `out`, or -EINVAL and fills `err` (its pointer relative to the object,
 * e.g. "/lat"). Unknown members are refused: a typo must not pass silently.
 */
int report_from_json(const struct json_t *json, const struct report_limits *limits,
                     struct report *out, struct report_error *err) MUST_CHECK;

/*
 * Parses a report as the scheduler reads it from Kafka, including
 * received_at (required), with the same tokenizer and checks as
 * report_body_next: no tree, and no allocation for a record of up to
 * REPORT_BODY_INLINE_TOKENS tokens. Returns 0, -EINVAL or -ENOMEM.
 */
int report_decode(const char *text, size_t len, struct report *out) MUST_CHECK;

/*
 * Serializes a report for Kafka; report_decode reads back exactly the same
 * report (numbers to the bit, in as few digits as that takes). Returns a malloc'd NUL-terminated string
 * (the caller frees it), or NULL when out of memory.
 */
char *report_encode(const struct report *r);

/* A number as it was written in the body it came from (borrowed from it). */
struct report_number_text {
        const char *text;
        size_t len;
};

/* A report read from a request body, its numbers also as their text. */
struct report_read {
        struct report report;
        struct report_number_text lat, lon, accuracy_m;
};

/* As report_decode, with the numbers' text too (borrowed from `text`). */
int report_decode_read(const char *text, size_t len, struct report_read *out) MUST_CHECK;

#define REPORT_BODY_INLINE_TOKENS 32

/*
 * A request body read in place: one report object, or an array of them. It
 * borrows the text it was parsed from, and allocates only for a body of
 * more than REPORT_BODY_INLINE_TOKENS tokens (JSON values and names).
 */
struct report_body {
        const char *text;
        size_t len;
        void *tokens; /* the tokenizer's: inline_tokens or malloc'd */
        unsigned n_tokens, next_tok;
        size_t n_reports; /* in the array, or 1 */
        bool is_array;
        bool scalar; /* a number or literal alone */
        int inline_tokens[REPORT_BODY_INLINE_TOKENS * 5];
};

/*
 * Parses a body as JSON, refusing exactly what report_from_json's callers
 * refuse through Jansson (JSON_REJECT_DUPLICATES | JSON_DECODE_ANY): a
 * syntax error, a number out of a double's (or an integer's) range, a bad
 * string escape or UTF-8, a member named twice, nesting deeper than 2048.
 * Returns 0, -EBADMSG (`why` says where and what) or -ENOMEM. Release
 * it with report_body_fini, whatever this returned.
 */
int report_body_parse(struct report_body *b, const char *text, size_t len, char *why,
                      size_t why_size) MUST_CHECK;

/*
 * Validates the body's next report (the value itself, or the array's next
 * element) as report_from_json does, with the same errors. Returns 0, -EINVAL
 * (`err` says why) or -ENOMEM.
 */
int report_body_next(struct report_body *b, const struct report_limits *limits,
                     struct report_read *out, struct report_error *err) MUST_CHECK;

void report_body_fini(struct report_body *b);

/*
 * The Kafka record of a report read from a body, as report_encode writes it
 * but with the numbers as their text (report_decode reads the same report).
 * Writes at most `size` bytes, NUL included; returns the length the whole
 * record takes (more than size - 1: it did not fit), as snprintf does.
 */
size_t report_encode_read(const struct report_read *r, char *buf, size_t size);

/* The last instant a report's time may name: 9999-12-31T23:59:59.999Z. */
#define REPORT_TIME_MAX_MS 253402300799999LL

/* RFC 3339 date-time ("2026-11-25T19:00:00.250+01:00") to Unix milliseconds
 * (digits past the third of the fraction are dropped; a leap second is
 * accepted only as 23:59:60 UTC and read as the next second). Returns 0, or
 * -EINVAL for another text or an instant outside [0, REPORT_TIME_MAX_MS],
 * so that report_format_time writes back every instant it accepts. */
int report_parse_time(const char *text, int64_t *out_ms) MUST_CHECK;

#define REPORT_TIME_LEN 64

/* Unix milliseconds to RFC 3339 in UTC with milliseconds (any instant with a
 * four-digit year; before 1970 too, though the parser refuses those). */
void report_format_time(int64_t ms, char out[REPORT_TIME_LEN]);
