/*
 * limit — a token bucket shared by the transfers of one agent: bytes per
 * second, smooth (a burst of at most a tenth of a second), taken before the
 * bytes are read off the wire so that TCP slows the sender down.
 */
#pragma once

#include <stdint.h>

struct bucket;

/* `rate` bytes per second; 0: no limit. */
int bucket_new(uint64_t rate, struct bucket **out);
struct bucket *bucket_free(struct bucket *b);

/* Takes `n` bytes, sleeping as long as the rate says. Thread-safe; NULL: no limit. */
void bucket_take(struct bucket *b, uint64_t n);
