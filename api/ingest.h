/*
 * ingest — POST /v1/locations, answered once Kafka has stored the reports.
 */
#pragma once

#include <microhttpd.h>

struct request;

enum MHD_Result api_ingest(struct request *req);
/* The producer's delivery report for one of a request's reports (`opaque`). */
void api_ingest_delivered(void *opaque, int err);
/*
 * The request no longer waits on Kafka (resumed, or completed without being
 * resumed): it leaves the count that shutdown waits on. Harmless twice.
 */
void api_ingest_unsuspended(struct request *req);
/* Counts an ingest answer by status and observes how long the request took. */
void api_count_ingest(struct request *req, unsigned status);
/* The statuses ingest answers with, as text, NULL-ended: one table for the counter and its labels. */
extern const char *const api_ingest_statuses[];
