/*
 * Reports to ingest, open loop: report k leaves at start + k / rate (or, on
 * a compressed clock, at start + its simulated arrival's distance from t0 /
 * speed), on one
 * of `in_flight` libcurl easy handles driven by a multi handle, whatever
 * the answers to the earlier ones; when every handle is busy at a report's
 * time it waits, and a report more than a second late is counted as behind
 * (the target rate was not held). Each request carries one report and the
 * token of its device, minted here with the device-token keys. Announced
 * trips take their place in the same stream, to /v1/trips.
 */
#include "cmd/post.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/auth.h"

#define TOKEN_TTL_S (400LL * 24 * 3600) /* outlives any simulated year */

struct slot {
        CURL *easy; /* NULL: free */
        struct curl_slist *headers;
        char *body;
};

struct post {
        char *url, *trips_url; /* .../v1/locations, .../v1/trips */
        double rate;
        double speed; /* above 0: paced by the simulated clock from t0_ms */
        int64_t t0_ms;
        struct auth_keyring *keys;
        CURLM *multi;
        struct slot *slots;
        long n_slots, busy;
        double start;
        struct post_stats stats;
};

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t discard(char *data, size_t size, size_t n, void *ctx) {
        (void)data;
        (void)ctx;
        return size * n;
}

int post_new(const char *base_url, double rate, long in_flight, const char *keys,
             struct post **out) {
        struct post *p;
        char err[256];
        size_t len = strlen(base_url);

        if (!(rate > 0) || in_flight < 1) {
                fprintf(stderr, "homing simulate: --rate and --in-flight must be above 0\n");
                return -EINVAL;
        }
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        if (auth_keyring_new(keys, &p->keys, err, sizeof(err)) < 0 ||
            auth_keyring_size(p->keys) == 0) {
                fprintf(stderr, "homing simulate: the device-token keys: %s\n",
                        p->keys ? "none given (HOMING_DEVICE_TOKEN_KEYS or --device-token-keys)"
                                : err);
                post_free(p);
                return -EINVAL;
        }
        while (len > 0 && base_url[len - 1] == '/')
                len--;
        p->url = malloc(len + sizeof("/v1/locations"));
        p->trips_url = malloc(len + sizeof("/v1/trips"));
        p->slots = calloc((size_t)in_flight, sizeof(*p->slots));
        p->multi = curl_multi_init();
        if (!p->url || !p->trips_url || !p->slots || !p->multi) {
                post_free(p);
                return -ENOMEM;
        }
        memcpy(p->url, base_url, len);
        strcpy(p->url + len, "/v1/locations");
        memcpy(p->trips_url, base_url, len);
        strcpy(p->trips_url + len, "/v1/trips");
        p->rate = rate;
        p->n_slots = in_flight;
        *out = p;
        return 0;
}

static void slot_clear(struct post *p, struct slot *s) {
        if (!s->easy)
                return;
        curl_multi_remove_handle(p->multi, s->easy);
        curl_easy_cleanup(s->easy);
        curl_slist_free_all(s->headers);
        free(s->body);
        s->easy = NULL;
        s->headers = NULL;
        s->body = NULL;
        p->busy--;
}

/* Moves the transfers on and counts the answers of those that ended. */
static void drive(struct post *p, int wait_ms) {
        CURLMsg *msg;
        int running, left;

        curl_multi_perform(p->multi, &running);
        if (wait_ms > 0 && running > 0)
                curl_multi_poll(p->multi, NULL, 0, wait_ms, NULL);
        else if (wait_ms > 0) {
                struct timespec ts = { wait_ms / 1000, (long)(wait_ms % 1000) * 1000000L };
                nanosleep(&ts, NULL);
        }
        curl_multi_perform(p->multi, &running);
        while ((msg = curl_multi_info_read(p->multi, &left))) {
                CURL *easy = msg->easy_handle; /* msg goes with its handle */
                long status = 0;
                if (msg->msg != CURLMSG_DONE)
                        continue;
                if (msg->data.result == CURLE_OK)
                        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
                if (status == 202 || status == 201)
                        p->stats.accepted++;
                else if (status == 429)
                        p->stats.throttled++;
                else if (status == 503)
                        p->stats.unavailable++;
                else if (status)
                        p->stats.refused++;
                else
                        p->stats.failed++;
                for (long i = 0; i < p->n_slots; i++)
                        if (p->slots[i].easy == easy) {
                                slot_clear(p, &p->slots[i]);
                                break;
                        }
        }
}

/* Sends `doc` (taken) to url with the device's token. */
static int start(struct post *p, struct slot *s, const char *url, const char *device_id,
                 const char *user_id, json_t *doc) {
        char *token = NULL, *auth = NULL;
        int err;

        s->body = doc ? json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
        json_decref(doc);
        err = auth_device_token_mint(p->keys, device_id, user_id, (int64_t)time(NULL) + TOKEN_TTL_S,
                                     &token);
        if (err == 0 && asprintf(&auth, "Authorization: Bearer %s", token) < 0)
                err = -ENOMEM;
        free(token);
        if (err == 0 && (!s->body || !(s->easy = curl_easy_init())))
                err = -ENOMEM;
        if (err == 0) {
                s->headers = curl_slist_append(NULL, auth);
                s->headers = curl_slist_append(s->headers, "Content-Type: application/json");
                curl_easy_setopt(s->easy, CURLOPT_URL, url);
                curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->headers);
                curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->body);
                curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, discard);
                curl_easy_setopt(s->easy, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
                curl_easy_setopt(s->easy, CURLOPT_TIMEOUT_MS, 15000L);
                curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
                if (curl_multi_add_handle(p->multi, s->easy) != CURLM_OK)
                        err = -EIO;
        }
        free(auth);
        if (err < 0) {
                curl_easy_cleanup(s->easy);
                curl_slist_free_all(s->headers);
                free(s->body);
                *s = (struct slot){ 0 };
                return err;
        }
        p->busy++;
        p->stats.sent++;
        return 0;
}

void post_set_clock(struct post *p, int64_t t0_ms, double speed) {
        p->t0_ms = t0_ms;
        p->speed = speed;
}

/* Waits for the time of the next request, which the simulation sends at
 * at_ms, and a free slot; returns the slot. */
static struct slot *next_slot(struct post *p, int64_t at_ms) {
        double due;

        if (p->start == 0)
                p->start = now_s();
        if (p->speed > 0)
                due = p->start + (double)(at_ms - p->t0_ms) / 1000.0 / p->speed;
        else
                due = p->start + (double)p->stats.sent / p->rate;
        for (;;) {
                double wait = due - now_s();
                if (wait <= 0 && p->busy < p->n_slots)
                        break;
                drive(p, wait > 0 ? (int)(wait * 1000) + 1 : 50);
        }
        if (now_s() - due > 1.0)
                p->stats.behind++;
        for (long i = 0; i < p->n_slots; i++)
                if (!p->slots[i].easy)
                        return &p->slots[i];
        return NULL; /* not reached: a slot was free */
}

int post_report(struct post *p, const struct report *r) {
        struct slot *s = next_slot(p, r->received_ms);
        char ts[REPORT_TIME_LEN];

        if (!s)
                return -EIO;
        report_format_time(r->ts_ms, ts);
        return start(p, s, p->url, r->device_id, r->user_id,
                     json_pack("{s:s, s:s, s:f, s:f, s:f, s:s}", "device_id", r->device_id,
                               "user_id", r->user_id, "lat", r->lat, "lon", r->lon, "accuracy_m",
                               r->accuracy_m, "ts", ts));
}

int post_trip(struct post *p, int64_t told_ms, const char *device_id, const char *user_id,
              double lat, double lon, int64_t arrive_ms, int64_t return_ms) {
        struct slot *s = next_slot(p, told_ms);
        char arrive[REPORT_TIME_LEN], back[REPORT_TIME_LEN];

        if (!s)
                return -EIO;
        report_format_time(arrive_ms, arrive);
        report_format_time(return_ms, back);
        return start(p, s, p->trips_url, device_id, user_id,
                     json_pack("{s:f, s:f, s:s, s:s}", "lat", lat, "lon", lon, "arrive_at", arrive,
                               "return_at", back));
}

void post_finish(struct post *p, struct post_stats *stats) {
        while (p->busy > 0)
                drive(p, 100);
        p->stats.seconds = p->start ? now_s() - p->start : 0;
        if (stats)
                *stats = p->stats;
}

struct post *post_free(struct post *p) {
        if (!p)
                return NULL;
        for (long i = 0; p->slots && i < p->n_slots; i++)
                slot_clear(p, &p->slots[i]);
        if (p->multi)
                curl_multi_cleanup(p->multi);
        free(p->slots);
        free(p->url);
        free(p->trips_url);
        auth_keyring_free(p->keys);
        free(p);
        return NULL;
}
