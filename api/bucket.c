/*
 * Token buckets by key, for ingest's per-device rate. The table is a fixed
 * array probed from the key's hash: a key not seen lately, whose bucket has
 * refilled, is as good as absent, so its slot is reused; when the probe
 * finds no such slot the one heard from longest ago goes. Keys are device
 * ids from signed tokens, so nobody chooses them freely.
 */
#include "api/bucket.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"

#define PROBE 8
#define KEY_MAX 64

struct bucket {
        char key[KEY_MAX + 1];
        double tokens;
        double at; /* when `tokens` was counted */
};

struct api_buckets {
        pthread_mutex_t lock;
        double rate;
        double burst;
        size_t n;
        struct bucket slots[];
};

int api_buckets_new(double rate, long burst, size_t slots, struct api_buckets **out) {
        struct api_buckets *b;

        if (slots == 0 || rate <= 0)
                return -EINVAL;
        b = calloc(1, sizeof(*b) + slots * sizeof(b->slots[0]));
        if (!b)
                return -ENOMEM;
        pthread_mutex_init(&b->lock, NULL);
        b->rate = rate;
        b->burst = (double)burst;
        b->n = slots;
        *out = b;
        return 0;
}

struct api_buckets *api_buckets_free(struct api_buckets *b) {
        if (b) {
                pthread_mutex_destroy(&b->lock);
                free(b);
        }
        return NULL;
}

static double level(const struct api_buckets *b, const struct bucket *s, double now) {
        double t = s->tokens + (now - s->at) * b->rate;
        return t < b->burst ? t : b->burst;
}

/* The key's bucket, or a slot made its own (full). */
static struct bucket *find(struct api_buckets *b, const char *key, double now) {
        size_t start = (size_t)(hash_fnv1a(key) % b->n);
        struct bucket *oldest = &b->slots[start];

        for (size_t i = 0; i < PROBE && i < b->n; i++) {
                struct bucket *s = &b->slots[(start + i) % b->n];
                if (!strncmp(s->key, key, KEY_MAX))
                        return s;
        }
        for (size_t i = 0; i < PROBE && i < b->n; i++) {
                struct bucket *s = &b->slots[(start + i) % b->n];
                if (!s->key[0] || level(b, s, now) >= b->burst) {
                        oldest = s;
                        break;
                }
                if (s->at < oldest->at)
                        oldest = s;
        }
        snprintf(oldest->key, sizeof(oldest->key), "%s", key);
        oldest->tokens = b->burst;
        oldest->at = now;
        return oldest;
}

double api_buckets_take(struct api_buckets *b, const char *key, double n, double now) {
        struct bucket *s;
        double have, wait = 0;

        if (n > b->burst)
                n = b->burst;
        pthread_mutex_lock(&b->lock);
        s = find(b, key, now);
        have = level(b, s, now);
        if (have >= n) {
                s->tokens = have - n;
                s->at = now;
        } else {
                wait = (n - have) / b->rate;
        }
        pthread_mutex_unlock(&b->lock);
        return wait;
}
