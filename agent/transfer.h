/*
 * transfer — one transfer into this datacenter, run by the target's agent:
 * the template if it is missing, then the snapshot version, built from the
 * blocks it already holds (a cached older version, an interrupted attempt)
 * and only the rest pulled from the source; verified before it is trusted.
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image/image.h"

struct control;
struct bucket;

#define TRANSFER_ID_MAX 128
#define TRANSFER_URL_MAX 512

/* A claimed job, as the API's claim answered it (agent/README.md). */
struct transfer_job {
        int64_t id;
        char snapshot_id[TRANSFER_ID_MAX];
        int64_t version;
        int priority; /* 1 most urgent ... 5 */
        uint8_t content_sha256[IMAGE_DIGEST_SIZE];
        bool registered; /* the version has a registered content digest */
        char template_id[TRANSFER_ID_MAX];
        char source_url[TRANSFER_URL_MAX];          /* the source agent's base URL */
        char template_source_url[TRANSFER_URL_MAX]; /* "" when the template is here */
        char ticket[128];
        int64_t have_versions[16]; /* cached copies here, newest first */
        size_t n_have;
};

/* What a transfer runs with; everything borrowed. */
struct transfer_env {
        const char *store; /* this datacenter's store directory */
        const char *datacenter;
        const char *owner; /* this agent's claim owner */
        struct control *control;
        struct bucket *bucket; /* the agent's bandwidth cap; NULL: none */
        atomic_bool *stop;     /* the process is stopping */
        long progress_ms;      /* how often progress is reported */
        const char *tls_ca;    /* CA file for https peers; NULL or "": the system's */
        /* Asked when the API says a more urgent transfer waits: step aside? */
        bool (*should_pause)(void *ctx, int priority);
        void *pause_ctx;
};

/* What a transfer counted, for the caller's log and metrics. */
struct transfer_stats {
        uint64_t bytes_total;  /* the version's blocks */
        uint64_t bytes_local;  /* copied from a cached version or kept from an attempt */
        uint64_t bytes_remote; /* data that came over the wire */
        uint64_t bytes_wire;   /* bytes received, framing included */
        uint64_t chunks_refetched;
        /* Seconds spent in each phase, to see where a transfer's time goes:
         * the template, manifest and configuration; hashing what a partial
         * image holds and planning; moving the blocks; the verification
         * (checked blocks, allocation map, qemu-img check); flush, fsync and
         * rename. */
        double s_prepare, s_scan, s_blocks, s_verify, s_check, s_commit;
};

/*
 * Runs a claimed job to its end and reports it (succeeded, paused, or
 * failed with `err`). Returns 0 (succeeded), -ECANCELED (cancelled, or the
 * lease went elsewhere: nothing more to say), -EBUSY (paused for a more
 * urgent transfer: queued again, what was written kept), -EAGAIN (failed,
 * may succeed later: the source did not answer), or another -errno (failed
 * for good).
 */
int transfer_run(const struct transfer_env *env, const struct transfer_job *job,
                 struct transfer_stats *stats, char *err, size_t err_size);
