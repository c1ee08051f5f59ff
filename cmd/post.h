/*
 * post — location reports sent to homing's ingest as phones send them: one
 * report a request, each with its device's own token, open loop at a
 * target rate (a report is sent when its time comes, whatever the answers
 * to the earlier ones), several requests in flight, or on a compressed
 * clock: each report when its simulated arrival comes, the simulated clock
 * running a given number of times the wall clock; announced trips go the
 * same way to /v1/trips. Internal to cmd/
 * (`homing simulate --post`).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "report/report.h"

struct post;

/* Counts of what the requests got. */
struct post_stats {
        size_t sent, accepted, throttled, unavailable, refused, failed;
        size_t behind; /* reports sent later than their time by more than a second */
        double seconds;
};

/*
 * A poster to `base_url` (…/v1/locations is added) at `rate` reports a
 * second with at most `in_flight` requests at once, minting device tokens
 * with the keyring `keys` ("kid:base64key,..."). Returns 0, or -EINVAL
 * after saying why on stderr, or -ENOMEM.
 */
int post_new(const char *base_url, double rate, long in_flight, const char *keys,
             struct post **out);

/*
 * Paces the reports by their simulated arrival (received_ms) instead of the
 * rate: the one that arrives at simulated time t leaves at start + (t -
 * t0_ms) / speed seconds, start being when the first is posted. Call before
 * the first post_report; speed must be above 0.
 */
void post_set_clock(struct post *p, int64_t t0_ms, double speed);

/* Waits for the report's time, then sends it. Returns 0 or a negative errno. */
int post_report(struct post *p, const struct report *r);

/* The same for an announced trip, told at told_ms (POST /v1/trips with the
 * device's token; 201 counts as accepted). Returns 0 or a negative errno. */
int post_trip(struct post *p, int64_t told_ms, const char *device_id, const char *user_id,
              double lat, double lon, int64_t arrive_ms, int64_t return_ms);

/* Waits for the requests in flight and fills *stats. NULL stats is fine. */
void post_finish(struct post *p, struct post_stats *stats);

struct post *post_free(struct post *p);
