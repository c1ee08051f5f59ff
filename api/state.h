/*
 * The server's state that handlers read: the configuration, the Kafka
 * producer, the PostgreSQL pool, the device keyring, the hooks and the
 * series /metrics shows about the HTTP side. A type only: server.c fills
 * it at start and frees it at stop.
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "api/api.h"
#include "api/pool.h"
#include "api/ready.h"
#include "api/request.h"

struct api {
        const struct config *cfg;
        struct MHD_Daemon *daemon;
        struct bus_producer *producer;
        struct bus_topic *locations;     /* the producer's handle of --topic-locations */
        struct api_buckets *buckets;     /* ingest's per device; NULL: no limit */
        struct api_deadlines *deadlines; /* on reading a request (deadline.c) */
        struct api_pool pool;
        struct auth_keyring *device_keys;
        char *tls_cert, *tls_key; /* PEM text, when serving HTTPS */
        uint16_t port;
        struct api_hooks hooks;
        /* shutdown's drain (api_stop): once stopping, ingest suspends nothing
         * new, and the daemon stops when no request is suspended any more */
        atomic_bool stopping;
        atomic_int suspended;
        struct metrics *own_metrics; /* when no registry was given */
        /* what /metrics says about this process's HTTP side */
        struct metrics_counter *ingest_requests; /* by status: api_ingest_statuses */
        struct metrics_counter *rate_limited;    /* reports refused with 429 */
        struct metrics_counter *reports_accepted;
        struct metrics_counter *auth_failures;
        struct metrics_histogram *ingest_seconds;  /* request in to answer out */
        struct metrics_histogram *produce_seconds; /* produce to the last delivery report */
        struct metrics_fn *kafka_queue;
        /* readiness, checked in the background (ready.c); ready_lock guards the rest */
        pthread_t ready_thread;
        bool ready_running;
        pthread_mutex_t ready_lock;
        pthread_cond_t ready_wake;
        bool ready_wake_init;
        bool ready_stop;
        struct api_readiness readiness;
        double ready_at; /* metrics_now() of the last check */
        /* operator and agent tokens looked up lately (access.c), by SHA-256:
         * --token-cache-s without a PostgreSQL round trip */
        pthread_mutex_t tokens_lock;
        struct api_token_seen {
                char hash[65];
                int kind; /* enum auth_token_kind */
                struct principal who;
                double until; /* metrics_now() */
        } tokens_seen[64];
        /* /v1/datacenters/nearest: the active datacenters' geo index, and the
         * stamp of the rows it was built from (datacenters.c) */
        pthread_mutex_t sites_lock;
        struct geo_index *sites;
        char sites_stamp[33];
};
