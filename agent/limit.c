/*
 * A token bucket that may go into debt: a caller taking more than the burst
 * pays it off by sleeping, so a large read does not wait for a bucket that
 * could never hold it, and the average stays the rate.
 */
#include "agent/limit.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "base/clock.h"

struct bucket {
        pthread_mutex_t lock;
        double rate, burst, tokens;
        double last; /* seconds, CLOCK_MONOTONIC */
};

int bucket_new(uint64_t rate, struct bucket **out) {
        struct bucket *b;

        if (rate == 0) {
                *out = NULL;
                return 0;
        }
        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        pthread_mutex_init(&b->lock, NULL);
        b->rate = (double)rate;
        b->burst = b->rate / 10 > 16384 ? b->rate / 10 : 16384;
        b->tokens = 0; /* start empty: no burst at the start of a run either */
        b->last = clock_mono_s();
        *out = b;
        return 0;
}

struct bucket *bucket_free(struct bucket *b) {
        if (b) {
                pthread_mutex_destroy(&b->lock);
                free(b);
        }
        return NULL;
}

void bucket_take(struct bucket *b, uint64_t n) {
        double wait, t;

        if (!b)
                return;
        pthread_mutex_lock(&b->lock);
        t = clock_mono_s();
        b->tokens += (t - b->last) * b->rate;
        if (b->tokens > b->burst)
                b->tokens = b->burst;
        b->last = t;
        b->tokens -= (double)n;
        wait = b->tokens < 0 ? -b->tokens / b->rate : 0;
        pthread_mutex_unlock(&b->lock);
        if (wait > 0) {
                struct timespec ts = { (time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9) };
                nanosleep(&ts, NULL);
        }
}
