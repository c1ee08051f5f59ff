/*
 * bench-parse: the CPU one request body of reports costs ingest before
 * Kafka, the way it was (Jansson: a tree, report_from_json, report_encode's
 * tree and json_dumps) and the way it is (report_body_* on jsmn tokens,
 * report_encode_read). CPU time per report, for 1 and 100 reports a body:
 * a figure that other work on the machine moves less than a throughput.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/auth.h"
#include "report/report.h"

static double cpu_s(void) {
        struct timespec t;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
        return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static size_t sink;

static void with_tree(const char *body, size_t len, const struct report_limits *limits) {
        json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
        size_t n = json_is_array(doc) ? json_array_size(doc) : 1;
        struct report_error e;

        for (size_t i = 0; i < n; i++) {
                struct report r;
                char *text;
                if (report_from_json(json_is_array(doc) ? json_array_get(doc, i) : doc, limits, &r,
                                     &e) < 0)
                        abort();
                r.received_ms = limits->now_ms;
                text = report_encode(&r);
                sink += strlen(text);
                free(text);
        }
        json_decref(doc);
}

static void with_tokens(const char *body, size_t len, const struct report_limits *limits) {
        struct report_body b;
        struct report_error e;
        char record[512];

        if (report_body_parse(&b, body, len, NULL, 0) < 0)
                abort();
        for (size_t i = 0; i < b.n_reports; i++) {
                struct report_read r;
                if (report_body_next(&b, limits, &r, &e) < 0)
                        abort();
                r.report.received_ms = limits->now_ms;
                sink += report_encode_read(&r, record, sizeof(record));
        }
        report_body_fini(&b);
}

/* The device token check of every request (HMAC-SHA-256, the claims read). */
static int token_check(void) {
        struct auth_keyring *ring = NULL;
        struct auth_device_claims claims;
        char err[128], *key = NULL, *token = NULL;
        long checks = 1000000;
        double start;

        if (auth_key_generate("bench", &key) < 0 ||
            auth_keyring_new(key, &ring, err, sizeof(err)) < 0 ||
            auth_device_token_mint(ring, "d-123", "u-123", 2000000000, &token) < 0)
                return -1;
        start = cpu_s();
        for (long i = 0; i < checks; i++)
                if (auth_device_token_verify(ring, token, 1795633200, &claims) < 0)
                        return -1;
        printf("the device token's check, a request: %36.2f us CPU\n",
               (cpu_s() - start) * 1e6 / (double)checks);
        free(key);
        free(token);
        auth_keyring_free(ring);
        return 0;
}

int main(void) {
        static const struct report_limits limits = { 1795633200000LL, 300 * 1000 };
        char *body = malloc(100 * 200 + 2);

        for (int batch = 1; batch <= 100; batch += 99) {
                size_t len = 0;
                long reports = 1000000;
                if (batch > 1)
                        body[len++] = '[';
                for (int i = 0; i < batch; i++)
                        len += (size_t)sprintf(body + len,
                                               "%s{\"device_id\":\"d-%d\",\"user_id\":\"u-%d\","
                                               "\"lat\":%.5f,\"lon\":%.5f,\"accuracy_m\":20,"
                                               "\"ts\":\"2026-11-25T19:00:00Z\"}",
                                               i ? "," : "", i % 1000, i % 1000,
                                               48.85 + (i % 100) / 1000.0,
                                               2.35 + (i % 77) / 1000.0);
                if (batch > 1)
                        body[len++] = ']';
                for (int way = 0; way < 2; way++) {
                        double start = cpu_s(), us;
                        for (long done = 0; done < reports; done += batch)
                                (way ? with_tokens : with_tree)(body, len, &limits);
                        us = (cpu_s() - start) * 1e6 / (double)reports;
                        printf("%3d report(s) a body, %-40s %6.2f us CPU per report\n", batch,
                               way ? "jsmn tokens, numbers as text:" : "Jansson tree, json_dumps:",
                               us);
                }
        }
        free(body);
        return token_check() < 0 || sink == 0;
}
