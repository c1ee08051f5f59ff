/*
 * bucket — token buckets by key (a device id): `rate` tokens a second up
 * to `burst`, in a fixed table, so memory stays bounded whatever the keys.
 */
#pragma once

#include <stddef.h>

#include "base/must-check.h"

struct api_buckets;

/* A table of `slots` (at least 1) buckets, `rate` > 0. 0, -EINVAL or -ENOMEM. */
int api_buckets_new(double rate, long burst, size_t slots, struct api_buckets **out) MUST_CHECK;
struct api_buckets *api_buckets_free(struct api_buckets *b);

/*
 * Takes `n` tokens (at most a full bucket's) from the bucket of `key` at
 * `now` (seconds, monotonic). Returns 0 when taken, else the seconds until
 * they will be there (nothing taken). A key the table has no room for gets
 * the place of the one heard from longest ago, with a full bucket.
 */
double api_buckets_take(struct api_buckets *b, const char *key, double n, double now);
