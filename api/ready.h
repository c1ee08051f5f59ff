/*
 * ready — readiness, checked in the background: PostgreSQL and its
 * migrations, Kafka, and the consumer's partitions, once a second on a
 * thread of its own, so /readyz answers from the last check at once and a
 * probe never waits on a service that hangs.
 */
#pragma once

#include <stdbool.h>

#include "base/must-check.h"

struct api;

/* What the last check found. */
struct api_readiness {
        bool checked; /* false until the first check has finished */
        bool pg, kafka, consumer;
        int schema_version;
};

/* A check older than this (a check that hangs) counts as not ready. */
#define API_READY_STALE_S 10.0

/* Runs the first check, then starts the thread. 0 or <0 (logged). */
int api_ready_start(struct api *a) MUST_CHECK;
/* Stops the thread (after its current check). Fine when it never started. */
void api_ready_stop(struct api *a);
/* The last check into *out; returns its age in seconds. */
double api_ready_get(struct api *a, struct api_readiness *out);
