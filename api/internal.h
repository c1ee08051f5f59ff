/*
 * What the api's files share: the server, a request's state, and the ways
 * to answer. Not for use outside api/.
 */
#pragma once

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct json_t;

struct api {
        const struct config *cfg;
        struct MHD_Daemon *daemon;
        struct bus_producer *producer;
        struct store *db; /* operator calls and health; guarded by db_lock */
        pthread_mutex_t db_lock;
        uint16_t port;
        /* ingest counters for /metrics */
        atomic_ulong ingest_by_status[6]; /* 202, 400, 413, 415, 422, 503 */
        atomic_ulong reports_accepted;
};

struct request {
        struct api *api;
        struct MHD_Connection *conn;
        enum MHD_Result (*handle)(struct request *req);
        char *body;
        size_t body_len, body_cap;
        bool body_too_large;
        /* ingest: reports handed to Kafka and not yet reported back */
        atomic_int pending;
        atomic_int failed;
        bool produced;
        int n_reports;
};

/* Answers with a JSON document (taken) and a status. */
enum MHD_Result api_reply_json(struct request *req, unsigned status, struct json_t *doc);

/*
 * Answers with an RFC 9457 problem document. `slug` names the problem type;
 * `extra` (taken, may be NULL) adds members such as "errors".
 */
enum MHD_Result api_reply_problem(struct request *req, unsigned status, const char *slug,
                                  const char *title, const char *detail, struct json_t *extra);

/* POST /v1/locations */
enum MHD_Result api_ingest(struct request *req);
/* Called from the producer's thread for each report of a request. */
void api_ingest_delivered(void *opaque, int err);
void api_count_ingest(struct api *a, unsigned status);
