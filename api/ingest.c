/*
 * POST /v1/locations: validate every report, hand them to Kafka, and answer
 * 202 only when the broker has stored them all (acks=all). The connection is
 * suspended meanwhile, so no thread waits; the producer's delivery reports
 * resume it. If Kafka cannot take them in time the answer is 503 with
 * Retry-After: the device keeps the reports and sends them again.
 *
 * The device token (checked before this runs, access.c) names one device
 * and one user: every report of the request must be theirs, or nothing is
 * produced and the answer is 403.
 */
#include "api/ingest.h"

#include <errno.h>
#include <math.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/bucket.h"
#include "api/reply.h"
#include "api/request.h"
#include "api/state.h"
#include "api/parse.h"
#include "base/clock.h"
#include "base/config.h"
#include "base/log.h"
#include "bus/bus.h"
#include "metrics/metrics.h"
#include "report/report.h"

/* The statuses ingest answers with: the label values of homing_ingest_requests_total. */
const char *const api_ingest_statuses[] = { "202", "400", "401", "403", "413",
                                            "415", "422", "429", "503", NULL };

void api_count_ingest(struct request *req, unsigned status) {
        struct api *a = req->api;

        for (size_t i = 0; api_ingest_statuses[i]; i++)
                if (strtoul(api_ingest_statuses[i], NULL, 10) == status)
                        metrics_counter_inc(a->ingest_requests, (size_t[]){ i });
        metrics_histogram_observe(a->ingest_seconds, NULL, metrics_now() - req->started_at);
}

static enum MHD_Result reply_invalid(struct request *req, int index, const struct report_error *e) {
        char pointer[96];
        json_t *errors;

        if (index >= 0)
                snprintf(pointer, sizeof(pointer), "/%d%s", index, e->pointer);
        else
                snprintf(pointer, sizeof(pointer), "%s", e->pointer);
        errors = json_pack("{s:[{s:s, s:s}]}", "errors", "pointer", pointer, "detail", e->detail);
        api_count_ingest(req, 422);
        return api_reply_problem(req, 422, "invalid-report", "The report is not valid", e->detail,
                                 errors);
}

/*
 * Encodes the reports end to end into one buffer (the stack's for a usual
 * single report) and hands them to Kafka in one call: one user, so one key
 * and one partition. A report that cannot be handed over fails the request.
 */
static void produce_all(struct request *req, const struct report_read *reports, int n) {
        struct api *a = req->api;
        char stack[512]; /* a usual record */
        char *arena = stack;
        size_t cap = sizeof(stack), used = 0, queued = 0;
        struct bus_value one, *values = n == 1 ? &one : malloc((size_t)n * sizeof(*values));

        /* One extra count, dropped after suspending, so no delivery can resume us early. */
        atomic_store(&req->pending, n + 1);
        if (!values)
                goto out;
        /* About 200 bytes a record: a batch's arena is allocated once, seldom grown. */
        if (n > 1 && (arena = malloc(cap = (size_t)n * 256)) == NULL)
                goto out;
        for (int i = 0; i < n; i++) {
                size_t len = report_encode_read(&reports[i], arena + used, cap - used);
                if (len >= cap - used) {
                        size_t bigger = cap * 2 > used + len + 1 ? cap * 2 : used + len + 1;
                        char *grown = arena == stack ? malloc(bigger) : realloc(arena, bigger);
                        if (!grown)
                                goto out;
                        if (arena == stack)
                                memcpy(grown, stack, used);
                        arena = grown;
                        cap = bigger;
                        report_encode_read(&reports[i], arena + used, cap - used);
                }
                values[i].len = len;
                used += len; /* the next record starts on this one's NUL */
        }
        for (size_t i = 0, at = 0; i < (size_t)n; at += values[i].len, i++)
                values[i].data = arena + at;
        queued = bus_produce_many(a->locations, reports[0].report.user_id,
                                  strlen(reports[0].report.user_id), values, (size_t)n, req);
out:
        if ((size_t)n > queued) {
                /* Nothing will report on the ones never handed over. */
                atomic_fetch_sub(&req->pending, n - (int)queued);
                atomic_store(&req->failed, 1);
        }
        if (arena != stack)
                free(arena);
        if (values != &one)
                free(values);
}

void api_ingest_delivered(void *opaque, int err) {
        struct request *req = opaque;

        if (err)
                atomic_store(&req->failed, 1);
        if (atomic_fetch_sub(&req->pending, 1) == 1) {
                metrics_histogram_observe(req->api->produce_seconds, NULL,
                                          metrics_now() - req->produced_at);
                MHD_resume_connection(req->conn);
        }
}

void api_ingest_unsuspended(struct request *req) {
        if (req->suspended) {
                req->suspended = false;
                atomic_fetch_sub(&req->api->suspended, 1);
        }
}

static enum MHD_Result finish(struct request *req) {
        struct api *a = req->api;
        char *accepted;

        api_ingest_unsuspended(req);
        if (atomic_load(&req->failed)) {
                static const char *const retry_after[] = { "Retry-After", "5", NULL };
                api_count_ingest(req, 503);
                return api_reply_problem_with(req, 503, "kafka-unavailable",
                                              "Reports cannot be stored right now",
                                              "Kafka did not store the reports in time; nothing "
                                              "was accepted. Send them again later.",
                                              NULL, retry_after);
        }
        metrics_counter_add(a->reports_accepted, NULL, (uint64_t)req->n_reports);
        api_count_ingest(req, 202);
        /* Every accepted request answers this: printed, not built as a tree and dumped. */
        if (asprintf(&accepted, "{\"accepted\":%d}", req->n_reports) < 0)
                return MHD_NO;
        return api_reply_text(req, 202, "application/json", accepted);
}

enum MHD_Result api_ingest(struct request *req) {
        struct api *a = req->api;
        struct report_limits limits = { clock_wall_ms(), a->cfg->max_future_skew_s * 1000 };
        struct report_read *reports = NULL;
        struct report_error e;
        struct report_body body;
        char why[160];
        size_t n;
        enum MHD_Result ret;
        int r;

        if (req->produced)
                return finish(req);

        if (!api_content_type_is_json(MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
                                                                  "Content-Type"))) {
                api_count_ingest(req, 415);
                return api_reply_problem(req, 415, "unsupported-media-type",
                                         "Unsupported media type",
                                         "location reports are sent as application/json", NULL);
        }
        if (req->body_too_large) {
                char detail[96];
                snprintf(detail, sizeof(detail), "the body exceeds %ld bytes",
                         a->cfg->max_body_bytes);
                api_count_ingest(req, 413);
                return api_reply_problem(req, 413, "body-too-large", "Request body too large",
                                         detail, NULL);
        }

        r = report_body_parse(&body, req->body ? req->body : "", req->body_len, why, sizeof(why));
        if (r < 0) {
                report_body_fini(&body);
                if (r == -ENOMEM)
                        return MHD_NO;
                api_count_ingest(req, 400);
                return api_reply_problem(req, 400, "malformed-json", "The body is not valid JSON",
                                         why, NULL);
        }

        n = body.n_reports;
        if (body.is_array && (n == 0 || n > (size_t)a->cfg->max_reports_per_request)) {
                char detail[96];
                snprintf(detail, sizeof(detail), "an array holds 1 to %ld reports",
                         a->cfg->max_reports_per_request);
                report_body_fini(&body);
                api_count_ingest(req, 422);
                return api_reply_problem(req, 422, "invalid-report", "The report is not valid",
                                         detail, NULL);
        }
        /* One report is read on the stack; an array takes one allocation, not one per report. */
        struct report_read one;
        reports = n == 1 ? &one : calloc(n, sizeof(*reports));
        if (!reports) {
                report_body_fini(&body);
                return MHD_NO;
        }
        for (size_t i = 0; i < n; i++) {
                if ((r = report_body_next(&body, &limits, &reports[i], &e)) < 0) {
                        ret = r == -ENOMEM ? MHD_NO
                                           : reply_invalid(req, body.is_array ? (int)i : -1, &e);
                        goto out;
                }
                reports[i].report.received_ms = limits.now_ms;
        }
        for (size_t i = 0; i < n; i++) {
                const struct auth_device_claims *c = &req->who.device;
                const struct report *rep = &reports[i].report;
                bool device_ok = !strcmp(rep->device_id, c->device_id);
                if (!device_ok || strcmp(rep->user_id, c->user_id) != 0) {
                        char pointer[32], detail[200];
                        const char *field = device_ok ? "user_id" : "device_id";
                        if (body.is_array)
                                snprintf(pointer, sizeof(pointer), "/%zu/%s", i, field);
                        else
                                snprintf(pointer, sizeof(pointer), "/%s", field);
                        snprintf(detail, sizeof(detail),
                                 "the device token speaks for device '%s' of user '%s' only",
                                 c->device_id, c->user_id);
                        api_count_ingest(req, 403);
                        ret = api_reply_problem(req, 403, "forbidden", "Forbidden", detail,
                                                json_pack("{s:[{s:s, s:s}]}", "errors", "pointer",
                                                          pointer, "detail", detail));
                        goto out;
                }
        }

        if (a->buckets) {
                double wait = api_buckets_take(a->buckets, req->who.device.device_id, (double)n,
                                               metrics_now());
                if (wait > 0) {
                        char seconds[24], detail[160];
                        const char *const retry_after[] = { "Retry-After", seconds, NULL };
                        snprintf(seconds, sizeof(seconds), "%ld", (long)ceil(wait));
                        snprintf(detail, sizeof(detail),
                                 "this device may send %g reports a second (%ld at once); "
                                 "send them again in %s s",
                                 a->cfg->ingest_rate_per_device, a->cfg->ingest_burst_per_device,
                                 seconds);
                        metrics_counter_add(a->rate_limited, NULL, (uint64_t)n);
                        api_count_ingest(req, 429);
                        ret = api_reply_problem_with(req, 429, "rate-limited",
                                                     "Too many reports from this device", detail,
                                                     NULL, retry_after);
                        goto out;
                }
        }
        /* Counted before looking at the flag, and api_stop sets the flag before
         * reading the count: either shutdown waits for this request, or the
         * request sees shutdown and suspends nothing. */
        req->suspended = true;
        atomic_fetch_add(&a->suspended, 1);
        if (atomic_load(&a->stopping)) {
                static const char *const closing[] = { "Retry-After", "1", "Connection", "close",
                                                       NULL };
                api_ingest_unsuspended(req);
                api_count_ingest(req, 503);
                ret = api_reply_problem_with(req, 503, "shutting-down", "The server is stopping",
                                             "nothing was accepted; send the reports again, "
                                             "to another instance or later",
                                             NULL, closing);
                goto out;
        }
        /* All valid: only now does anything leave the process. */
        req->n_reports = (int)n;
        req->produced = true;
        req->produced_at = metrics_now();
        produce_all(req, reports, (int)n);
        MHD_suspend_connection(req->conn);
        if (atomic_fetch_sub(&req->pending, 1) == 1)
                MHD_resume_connection(req->conn);
        ret = MHD_YES;
out:
        if (reports != &one)
                free(reports);
        report_body_fini(&body);
        return ret;
}
