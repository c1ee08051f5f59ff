/*
 * Readiness in the background. A probe that asked PostgreSQL and Kafka
 * itself held an HTTP thread for as long as they took to answer — up to
 * the Kafka metadata timeout, or forever on a PostgreSQL that hangs — and a
 * few probes froze every connection, ingest's included. Here one thread
 * checks once a second, with its own connection, and /readyz reads the
 * result and its age.
 */
#include "api/ready.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "api/state.h"
#include "base/config.h"
#include "base/log.h"
#include "bus/bus.h"
#include "metrics/metrics.h"
#include "store/store.h"

#define KAFKA_TIMEOUT_MS 2000
#define INTERVAL_S 1

static void check(struct api *a, struct store **db) {
        struct api_readiness r = { .checked = true };
        int rc = -ECONNREFUSED;

        if (!*db && store_connect_with_timeout(a->cfg->pg_dsn, 5000, db) < 0)
                *db = NULL;
        if (*db) {
                rc = store_schema_version(*db, &r.schema_version);
                /* A connection PostgreSQL's restart broke is re-opened on the next call. */
                if (rc == -ECONNRESET)
                        rc = store_schema_version(*db, &r.schema_version);
        }
        r.pg = rc == 0;
        r.kafka = bus_producer_reachable(a->producer, KAFKA_TIMEOUT_MS);
        r.consumer = !a->hooks.consumer_assigned || a->hooks.consumer_assigned();
        pthread_mutex_lock(&a->ready_lock);
        a->readiness = r;
        a->ready_at = metrics_now();
        pthread_mutex_unlock(&a->ready_lock);
}

static void *loop(void *arg) {
        struct api *a = arg;
        struct store *db = NULL;

        pthread_mutex_lock(&a->ready_lock);
        while (!a->ready_stop) {
                struct timespec until;
                pthread_mutex_unlock(&a->ready_lock);
                check(a, &db);
                clock_gettime(CLOCK_MONOTONIC, &until);
                until.tv_sec += INTERVAL_S;
                pthread_mutex_lock(&a->ready_lock);
                while (!a->ready_stop &&
                       pthread_cond_timedwait(&a->ready_wake, &a->ready_lock, &until) == 0)
                        ;
        }
        pthread_mutex_unlock(&a->ready_lock);
        db = store_free(db);
        return NULL;
}

int api_ready_start(struct api *a) {
        pthread_condattr_t attr;
        struct store *db = NULL;
        int r;

        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&a->ready_wake, &attr);
        pthread_condattr_destroy(&attr);
        a->ready_wake_init = true;
        /* The first answer is a real one: a probe right after start sees the truth. */
        check(a, &db);
        db = store_free(db);
        r = pthread_create(&a->ready_thread, NULL, loop, a);
        if (r != 0) {
                log_error("api", "cannot start the readiness thread: %s", strerror(r));
                return -r;
        }
        a->ready_running = true;
        return 0;
}

void api_ready_stop(struct api *a) {
        if (!a->ready_running)
                return;
        pthread_mutex_lock(&a->ready_lock);
        a->ready_stop = true;
        pthread_cond_signal(&a->ready_wake);
        pthread_mutex_unlock(&a->ready_lock);
        pthread_join(a->ready_thread, NULL);
        a->ready_running = false;
}

double api_ready_get(struct api *a, struct api_readiness *out) {
        double at;

        pthread_mutex_lock(&a->ready_lock);
        *out = a->readiness;
        at = a->ready_at;
        pthread_mutex_unlock(&a->ready_lock);
        return out->checked ? metrics_now() - at : 0;
}
