/*
 * bus — homing's Kafka plumbing: a producer whose every message reports its
 * fate back, a consumer whose partitions start where the caller says, and
 * the topics. librdkafka's types stay behind this header.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/must-check.h"

struct bus_producer;
struct bus_consumer;
struct bus_message;

/*
 * How to reach the cluster: the bootstrap servers, and librdkafka properties
 * (security.protocol, sasl.*, ssl.*, ...) applied after homing's own, those
 * of the file first. Every string is borrowed; NULL or "" is none.
 */
struct bus_cluster {
        const char *brokers;
        const char *properties;      /* "key=value" lines */
        const char *properties_file; /* a file of such lines, "#" or "!" comments */
};

/*
 * Called once per produced message, from the producer's own thread: `err` is
 * 0 when the broker stored it (acks=all), or why not: -ETIMEDOUT (no broker
 * took it in time: may pass), or the message's own fault, which will not:
 * -EMSGSIZE (too large), -ENOENT (no such topic), -EACCES (not allowed),
 * -EBADMSG (refused as invalid); -EIO for anything else.
 */
typedef void (*bus_delivered_fn)(void *opaque, int err);

/* The producer's queue: reports handed over and not yet reported on, at most. */
#define BUS_QUEUE_MAX_MESSAGES "100000"
#define BUS_QUEUE_MAX_KBYTES "65536"

/*
 * Every constructor below checks that the cluster lets it in, for a few
 * seconds at most: a refused login or TLS handshake fails it with -EACCES
 * (`errbuf` says why); a cluster that does not answer does not (librdkafka
 * keeps trying).
 */

/*
 * How a producer batches (librdkafka's linger.ms, batch.size and
 * compression.type); the cluster's properties still override them. NULL
 * takes the defaults below.
 */
struct bus_batching {
        double linger_ms;        /* how long a message waits for others to share its request */
        long batch_bytes;        /* a partition's request, at most */
        const char *compression; /* none, gzip, snappy, lz4 or zstd; borrowed */
};

#define BUS_LINGER_MS_DEFAULT "0.5"
#define BUS_BATCH_BYTES_DEFAULT "1000000"
#define BUS_COMPRESSION_DEFAULT "lz4"

/*
 * An idempotent producer with acks=all. Messages that Kafka has not taken
 * within `timeout_ms` fail. Returns 0, -EINVAL (a bad property or batching
 * value: `errbuf` says which) or -EACCES.
 */
int bus_producer_new(const struct bus_cluster *cluster, const struct bus_batching *batching,
                     long timeout_ms, bus_delivered_fn on_delivery, struct bus_producer **out,
                     char *errbuf, size_t errbuf_size) MUST_CHECK;

/* Flushes what is queued (up to 10 s), says what was left, and frees. NULL is fine. */
struct bus_producer *bus_producer_free(struct bus_producer *p);

/*
 * Queues one message; key and value are copied. `opaque` comes back in the
 * delivery callback. Returns 0, -ENOBUFS when the local queue is full, or
 * one of the delivery callback's errors; after a failure no callback comes.
 */
int bus_produce(struct bus_producer *p, const char *topic, const void *key, size_t key_len,
                const void *value, size_t value_len, void *opaque) MUST_CHECK;

/*
 * A topic looked up once, for bus_produce_many: no lookup by name per
 * message. Returns 0, -EINVAL (`errbuf` says why) or -ENOMEM. Free it
 * before its producer.
 */
struct bus_topic;
int bus_topic_new(struct bus_producer *p, const char *name, struct bus_topic **out, char *errbuf,
                  size_t errbuf_size) MUST_CHECK;
struct bus_topic *bus_topic_free(struct bus_topic *t);

struct bus_value {
        const void *data;
        size_t len;
};

/*
 * Queues `n` messages with one key (so one partition) on the topic, its
 * handle not looked up by name each time. Key and values are copied; every
 * message's delivery callback gets `opaque`. Returns how many were queued,
 * 0 to n: a message not queued (the local queue full, or one of the
 * delivery callback's errors, logged) gets no callback, and any of them
 * may be the one.
 */
size_t bus_produce_many(struct bus_topic *t, const void *key, size_t key_len,
                        const struct bus_value *values, size_t n, void *opaque) MUST_CHECK;

/* Waits until every queued message has its delivery report. Returns 0 or -ETIMEDOUT. */
int bus_producer_flush(struct bus_producer *p, long timeout_ms) MUST_CHECK;

/* Messages queued and not yet reported. */
long bus_producer_queued(struct bus_producer *p);

/* True when the cluster answers a metadata request within `timeout_ms`. */
bool bus_producer_reachable(struct bus_producer *p, long timeout_ms);

/* Creates the topics that don't exist yet. Returns 0, -EINVAL, -EACCES or -EIO (`errbuf` says why). */
int bus_ensure_topics(const struct bus_cluster *cluster, const char *const *topics, size_t n_topics,
                      int partitions, char *errbuf, size_t errbuf_size) MUST_CHECK;

/*
 * Looks the topics up, changing nothing: each one missing is logged, and so
 * is a partition count other than `partitions`. Returns how many are
 * missing (0: all there), or -EINVAL, -EACCES or -EIO (`errbuf` says why).
 */
int bus_check_topics(const struct bus_cluster *cluster, const char *const *topics, size_t n_topics,
                     int partitions, char *errbuf, size_t errbuf_size) MUST_CHECK;

/* What on_assign may say of a partition's start besides an offset. */
#define BUS_OFFSET_BEGINNING (-1) /* the oldest message Kafka still has */
/* not known yet: assign it paused; the caller seeks and resumes it once it knows */
#define BUS_OFFSET_HOLD (-2)

struct bus_partition {
        int32_t partition;
        int64_t offset; /* set by on_assign: the next offset to read, or BUS_OFFSET_* */
};

struct bus_consumer_ops {
        /* Partitions were assigned: fill in where each one starts. Return 0 or <0. */
        int (*on_assign)(void *ctx, struct bus_partition *parts, size_t n);
        /* Partitions are being taken away: finish with them before returning. */
        void (*on_revoke)(void *ctx, const struct bus_partition *parts, size_t n);
};

/*
 * A consumer in `group` on one topic, cooperative-sticky, offsets never
 * committed to Kafka: the caller keeps them (in PostgreSQL, beside its effects).
 */
int bus_consumer_new(const struct bus_cluster *cluster, const char *group, const char *topic,
                     const struct bus_consumer_ops *ops, void *ctx, struct bus_consumer **out,
                     char *errbuf, size_t errbuf_size) MUST_CHECK;

/* Leaves the group (revoking what it holds) and frees. NULL is fine. */
struct bus_consumer *bus_consumer_free(struct bus_consumer *c);

/*
 * Waits up to `timeout_ms` for a message. Returns 1 and a message the caller
 * frees with bus_message_free(), 0 when none came, or -EIO.
 */
int bus_consumer_poll(struct bus_consumer *c, long timeout_ms, struct bus_message **out) MUST_CHECK;

/*
 * The partition's high watermark as last fetched (cached: it does not wait
 * for the broker). Returns 0, or -ENOENT when none is known yet.
 */
int bus_consumer_high_watermark(struct bus_consumer *c, int32_t partition,
                                int64_t *high) MUST_CHECK;

/*
 * Moves a partition's read position, e.g. after a lost race for its offset;
 * BUS_OFFSET_BEGINNING for the oldest. Does not wait for it to land: no
 * message fetched before the call comes after it, and the first one that
 * comes says where reading resumed (a seek that failed later resumes
 * elsewhere, or not at all), so a caller that needs an exact start checks
 * that offset. Returns 0, or -EIO when it could not even be started.
 */
int bus_consumer_seek(struct bus_consumer *c, int32_t partition, int64_t offset) MUST_CHECK;

/*
 * Stops and restarts fetching a partition. Messages fetched before a pause
 * may still come from bus_consumer_poll: callers that must not see them
 * check for themselves. Returns 0 or -EIO (logged). A failed pause only
 * costs reading what is then ignored; a failed resume must be handled.
 */
int bus_consumer_pause(struct bus_consumer *c, int32_t partition);
int bus_consumer_resume(struct bus_consumer *c, int32_t partition) MUST_CHECK;

int32_t bus_message_partition(const struct bus_message *m);
int64_t bus_message_offset(const struct bus_message *m);
const void *bus_message_value(const struct bus_message *m, size_t *len);
struct bus_message *bus_message_free(struct bus_message *m);
