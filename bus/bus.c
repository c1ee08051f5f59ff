/*
 * Kafka through librdkafka. The producer owns a thread that polls for
 * delivery reports, so callers never have to; the consumer's rebalance
 * callback asks the caller where each assigned partition starts. Every
 * client takes the operator's properties after ours and, once made, checks
 * that the cluster lets it in.
 */
#include "bus/bus.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"

/*
 * What a client learns from librdkafka's error callback, the first member of
 * every handle (the callback's opaque). `reason` is written once, before
 * `refused` is set.
 */
struct client {
        atomic_bool claimed;
        atomic_bool refused; /* a login or TLS handshake refused */
        atomic_bool all_down;
        char reason[256];
};

struct bus_producer {
        struct client client;
        rd_kafka_t *rk;
        bus_delivered_fn on_delivery;
        pthread_t poller;
        atomic_bool stopping;
};

struct bus_topic {
        rd_kafka_topic_t *rkt;
};

struct bus_consumer {
        struct client client;
        rd_kafka_t *rk;
        char *topic;
        struct bus_consumer_ops ops;
        void *ctx;
};

static void on_log(const rd_kafka_t *rk, int level, const char *facility, const char *message);
static int pause_or_resume(struct bus_consumer *c, int32_t partition, bool pause);

static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errbuf,
                    size_t errbuf_size) {
        if (rd_kafka_conf_set(conf, name, value, errbuf, errbuf_size) != RD_KAFKA_CONF_OK)
                return -EINVAL;
        return 0;
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque);

/* A configuration with what every client of ours shares; `client` is its opaque. */
static rd_kafka_conf_t *conf_new(struct client *client) {
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_conf_set_log_cb(conf, on_log);
        rd_kafka_conf_set_error_cb(conf, on_error);
        rd_kafka_conf_set_opaque(conf, client);
        return conf;
}

/* Properties set by homing that an operator's would break: exactly-once rests on them. */
static const char *const reserved[] = { "bootstrap.servers",
                                        "group.id",
                                        "enable.auto.commit",
                                        "enable.auto.offset.store",
                                        "enable.idempotence",
                                        "acks",
                                        NULL };

/* One "key=value" line (trimmed) into `conf`; `origin` names it in `errbuf`. */
static int conf_set_line(rd_kafka_conf_t *conf, char *line, const char *origin, char *errbuf,
                         size_t errbuf_size) {
        char *eq = strchr(line, '='), *key = line, *value, *end;
        char why[256];

        if (!eq || eq == line) {
                snprintf(errbuf, errbuf_size, "%s: not key=value", origin);
                return -EINVAL;
        }
        *eq = '\0';
        value = eq + 1;
        for (end = eq; end > key && (end[-1] == ' ' || end[-1] == '\t');)
                *--end = '\0';
        while (*value == ' ' || *value == '\t')
                value++;
        for (const char *const *r = reserved; *r; r++) {
                if (!strcmp(key, *r)) {
                        snprintf(errbuf, errbuf_size, "%s: %s is homing's own%s", origin, key,
                                 !strcmp(key, "bootstrap.servers") ? " (--kafka-brokers)" : "");
                        return -EINVAL;
                }
        }
        if (rd_kafka_conf_set(conf, key, value, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
                snprintf(errbuf, errbuf_size, "%s: %s", origin, why);
                return -EINVAL;
        }
        return 0;
}

/* The operator's properties file, then their properties, over ours. Returns 0 or -EINVAL. */
static int conf_set_cluster(rd_kafka_conf_t *conf, const struct bus_cluster *cluster, char *errbuf,
                            size_t errbuf_size) {
        char origin[4200], *line = NULL, *list;
        size_t cap = 0;
        int r = 0;

        if (rd_kafka_conf_set(conf, "bootstrap.servers", cluster->brokers, errbuf, errbuf_size) !=
            RD_KAFKA_CONF_OK)
                return -EINVAL;
        if (cluster->properties_file && cluster->properties_file[0]) {
                FILE *f = fopen(cluster->properties_file, "r");
                if (!f) {
                        snprintf(errbuf, errbuf_size, "%s: %s", cluster->properties_file,
                                 strerror(errno));
                        return -EINVAL;
                }
                for (long number = 1; r == 0 && getline(&line, &cap, f) >= 0; number++) {
                        char *text = line + strspn(line, " \t");
                        text[strcspn(text, "\r\n")] = '\0';
                        if (!*text || *text == '#' || *text == '!')
                                continue;
                        snprintf(origin, sizeof(origin), "%s:%ld", cluster->properties_file,
                                 number);
                        r = conf_set_line(conf, text, origin, errbuf, errbuf_size);
                }
                free(line);
                fclose(f);
                if (r < 0)
                        return r;
        }
        if (!cluster->properties || !cluster->properties[0])
                return 0;
        list = strdup(cluster->properties);
        if (!list)
                return -ENOMEM;
        for (char *save = NULL, *text = strtok_r(list, "\n", &save); text && r == 0;
             text = strtok_r(NULL, "\n", &save)) {
                snprintf(origin, sizeof(origin), "--kafka-property %.*s", (int)strcspn(text, "="),
                         text);
                r = conf_set_line(conf, text, origin, errbuf, errbuf_size);
        }
        free(list);
        return r;
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
        struct client *client = opaque;

        /* A refused login or handshake is the configuration's, not the network's. */
        if ((err == RD_KAFKA_RESP_ERR__AUTHENTICATION || err == RD_KAFKA_RESP_ERR__SSL) &&
            !atomic_exchange(&client->claimed, true)) {
                snprintf(client->reason, sizeof(client->reason), "%s", reason);
                atomic_store(&client->refused, true);
        }
        if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
                atomic_store(&client->all_down, true);
        /* Transport errors come and go with the broker; librdkafka retries them. */
        log_warn("kafka", "%s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/*
 * Waits, up to 10 s, until the cluster answers a metadata request (it let us
 * in), refuses our login or handshake (-EACCES), or no broker is up (0: may
 * pass). `poll` serves the error callback where no thread of ours does.
 */
static int client_check(rd_kafka_t *rk, struct client *client, bool poll, char *errbuf,
                        size_t errbuf_size) {
        int64_t deadline = clock_mono_ms() + 10000;

        while (clock_mono_ms() < deadline) {
                const struct rd_kafka_metadata *md;
                if (poll)
                        rd_kafka_poll(rk, 0);
                if (atomic_load(&client->refused)) {
                        snprintf(errbuf, errbuf_size, "the cluster refused us: %s", client->reason);
                        return -EACCES;
                }
                if (atomic_load(&client->all_down))
                        return 0;
                if (rd_kafka_metadata(rk, 0, NULL, &md, 250) == RD_KAFKA_RESP_ERR_NO_ERROR) {
                        rd_kafka_metadata_destroy(md);
                        return 0;
                }
        }
        log_warn("kafka", "the cluster did not answer within 10 s; trying on");
        return 0;
}

/* librdkafka's own log lines join ours, as JSON. */
static void on_log(const rd_kafka_t *rk, int level, const char *facility, const char *message) {
        log_line(level <= 3   ? LOG_ERROR
                 : level <= 4 ? LOG_WARN
                 : level <= 6 ? LOG_INFO
                              : LOG_DEBUG,
                 "kafka", NULL, "%s: %s", facility, message);
}

/* What a producer's error says, as bus.h promises it: may it pass, or is it the message's? */
static int produce_errno(rd_kafka_resp_err_t err) {
        switch (err) {
        case RD_KAFKA_RESP_ERR_NO_ERROR:
                return 0;
        case RD_KAFKA_RESP_ERR__QUEUE_FULL:
                return -ENOBUFS;
        case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
        case RD_KAFKA_RESP_ERR__TIMED_OUT:
                return -ETIMEDOUT;
        case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
                return -EMSGSIZE;
        case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
        case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
                return -ENOENT;
        case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
                return -EACCES;
        case RD_KAFKA_RESP_ERR_INVALID_MSG:
        case RD_KAFKA_RESP_ERR_INVALID_RECORD:
        case RD_KAFKA_RESP_ERR__BAD_MSG:
                return -EBADMSG;
        default:
                return -EIO;
        }
}

static void on_delivery_report(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
        struct bus_producer *p = opaque;
        int err = produce_errno(m->err);

        if (err)
                log_debug("kafka", "delivery failed: %s", rd_kafka_err2str(m->err));
        p->on_delivery(m->_private, err);
}

static void *producer_poll_loop(void *arg) {
        struct bus_producer *p = arg;

        while (!atomic_load(&p->stopping))
                rd_kafka_poll(p->rk, 100);
        return NULL;
}

int bus_producer_new(const struct bus_cluster *cluster, const struct bus_batching *batching,
                     long timeout_ms, bus_delivered_fn on_delivery, struct bus_producer **out,
                     char *errbuf, size_t errbuf_size) {
        struct bus_producer *p;
        rd_kafka_conf_t *conf;
        char timeout[32], linger[32] = BUS_LINGER_MS_DEFAULT, batch[32] = BUS_BATCH_BYTES_DEFAULT;
        const char *compression = BUS_COMPRESSION_DEFAULT;

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->on_delivery = on_delivery;
        snprintf(timeout, sizeof(timeout), "%ld", timeout_ms);
        if (batching) {
                snprintf(linger, sizeof(linger), "%g", batching->linger_ms);
                snprintf(batch, sizeof(batch), "%ld", batching->batch_bytes);
                compression = batching->compression;
        }

        conf = conf_new(&p->client);
        if (conf_set(conf, "enable.idempotence", "true", errbuf, errbuf_size) < 0 ||
            conf_set(conf, "acks", "all", errbuf, errbuf_size) < 0 ||
            conf_set(conf, "linger.ms", linger, errbuf, errbuf_size) < 0 ||
            conf_set(conf, "batch.size", batch, errbuf, errbuf_size) < 0 ||
            conf_set(conf, "message.timeout.ms", timeout, errbuf, errbuf_size) < 0 ||
            /* A bounded queue: beyond, produce fails at once (the API answers 503)
             * rather than holding reports in memory for an unreachable broker. */
            conf_set(conf, "queue.buffering.max.messages", BUS_QUEUE_MAX_MESSAGES, errbuf,
                     errbuf_size) < 0 ||
            conf_set(conf, "queue.buffering.max.kbytes", BUS_QUEUE_MAX_KBYTES, errbuf,
                     errbuf_size) < 0 ||
            conf_set(conf, "compression.type", compression, errbuf, errbuf_size) < 0 ||
            conf_set(conf, "reconnect.backoff.max.ms", "1000", errbuf, errbuf_size) < 0 ||
            conf_set_cluster(conf, cluster, errbuf, errbuf_size) < 0)
                goto fail;
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery_report);

        p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errbuf, errbuf_size);
        if (!p->rk)
                goto fail; /* conf is still ours */
        if (pthread_create(&p->poller, NULL, producer_poll_loop, p) != 0) {
                snprintf(errbuf, errbuf_size, "cannot start the delivery thread");
                rd_kafka_destroy(p->rk);
                free(p);
                return -EAGAIN;
        }
        if (client_check(p->rk, &p->client, false, errbuf, errbuf_size) < 0) {
                atomic_store(&p->stopping, true);
                pthread_join(p->poller, NULL);
                rd_kafka_destroy(p->rk);
                free(p);
                return -EACCES;
        }
        *out = p;
        return 0;

fail:
        rd_kafka_conf_destroy(conf);
        free(p);
        return -EINVAL;
}

int bus_producer_flush(struct bus_producer *p, long timeout_ms) {
        return rd_kafka_flush(p->rk, (int)timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0
                                                                                    : -ETIMEDOUT;
}

long bus_producer_queued(struct bus_producer *p) {
        return rd_kafka_outq_len(p->rk);
}

struct bus_producer *bus_producer_free(struct bus_producer *p) {
        if (!p)
                return NULL;
        if (bus_producer_flush(p, 10000) < 0)
                log_error("kafka", "%ld messages were still undelivered at shutdown",
                          bus_producer_queued(p));
        atomic_store(&p->stopping, true);
        pthread_join(p->poller, NULL);
        rd_kafka_destroy(p->rk);
        free(p);
        return NULL;
}

int bus_produce(struct bus_producer *p, const char *topic, const void *key, size_t key_len,
                const void *value, size_t value_len, void *opaque) {
        /* The array form: rd_kafka_producev's RD_KAFKA_V_ macros are GNU C. */
        const rd_kafka_vu_t vus[] = {
                { .vtype = RD_KAFKA_VTYPE_TOPIC, .u.cstr = topic },
                { .vtype = RD_KAFKA_VTYPE_KEY, .u.mem = { (void *)key, key_len } },
                { .vtype = RD_KAFKA_VTYPE_VALUE, .u.mem = { (void *)value, value_len } },
                { .vtype = RD_KAFKA_VTYPE_MSGFLAGS, .u.i = RD_KAFKA_MSG_F_COPY },
                { .vtype = RD_KAFKA_VTYPE_OPAQUE, .u.ptr = opaque },
        };
        rd_kafka_error_t *error = rd_kafka_produceva(p->rk, vus, sizeof(vus) / sizeof(vus[0]));
        int r = 0;

        if (!error)
                return 0;
        r = produce_errno(rd_kafka_error_code(error));
        if (r != -ENOBUFS)
                log_warn("kafka", "cannot produce to %s: %s", topic, rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
        return r;
}

int bus_topic_new(struct bus_producer *p, const char *name, struct bus_topic **out, char *errbuf,
                  size_t errbuf_size) {
        struct bus_topic *t = calloc(1, sizeof(*t));

        if (!t)
                return -ENOMEM;
        /* NULL: the producer's topic settings (acks, message.timeout.ms, ...). */
        t->rkt = rd_kafka_topic_new(p->rk, name, NULL);
        if (!t->rkt) {
                snprintf(errbuf, errbuf_size, "topic %s: %s", name,
                         rd_kafka_err2str(rd_kafka_last_error()));
                free(t);
                return -EINVAL;
        }
        *out = t;
        return 0;
}

struct bus_topic *bus_topic_free(struct bus_topic *t) {
        if (t) {
                rd_kafka_topic_destroy(t->rkt);
                free(t);
        }
        return NULL;
}

/* rd_kafka_produce_batch's messages, on the stack: more take several calls. */
#define PRODUCE_CHUNK 64

size_t bus_produce_many(struct bus_topic *t, const void *key, size_t key_len,
                        const struct bus_value *values, size_t n, void *opaque) {
        rd_kafka_message_t msgs[PRODUCE_CHUNK];
        size_t queued = 0;

        for (size_t at = 0; at < n; at += PRODUCE_CHUNK) {
                size_t m = n - at < PRODUCE_CHUNK ? n - at : PRODUCE_CHUNK;
                int good;

                memset(msgs, 0, m * sizeof(*msgs));
                for (size_t i = 0; i < m; i++) {
                        msgs[i].payload = (void *)values[at + i].data;
                        msgs[i].len = values[at + i].len;
                        msgs[i].key = (void *)key;
                        msgs[i].key_len = key_len;
                        msgs[i]._private = opaque;
                }
                /* The topic locked once for all; each message still partitioned by its key. */
                good = rd_kafka_produce_batch(t->rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY,
                                              msgs, (int)m);
                queued += good > 0 ? (size_t)good : 0;
                if (good == (int)m)
                        continue;
                /* Any of them may have failed: say the first reason, unless only a full queue. */
                for (size_t i = 0; i < m; i++) {
                        if (msgs[i].err && msgs[i].err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                                log_warn("kafka", "cannot produce to %s: %s",
                                         rd_kafka_topic_name(t->rkt),
                                         rd_kafka_err2str(msgs[i].err));
                                break;
                        }
                }
                break;
        }
        return queued;
}

bool bus_producer_reachable(struct bus_producer *p, long timeout_ms) {
        const struct rd_kafka_metadata *md;

        if (rd_kafka_metadata(p->rk, 0, NULL, &md, (int)timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
                return false;
        rd_kafka_metadata_destroy(md);
        return true;
}

/*
 * A producer handle for one of the cluster's admin calls (making and
 * checking topics), whose callbacks use `client` (the caller's, which must
 * outlive it). 0 and *out; -EINVAL when the settings or librdkafka refused
 * them, -EACCES when the cluster refused us (errbuf says why).
 */
static int admin_new(const struct bus_cluster *cluster, struct client *client, rd_kafka_t **out,
                     char *errbuf, size_t errbuf_size) {
        rd_kafka_conf_t *conf = conf_new(client);
        rd_kafka_t *rk;

        if (conf_set_cluster(conf, cluster, errbuf, errbuf_size) < 0) {
                rd_kafka_conf_destroy(conf);
                return -EINVAL;
        }
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errbuf, errbuf_size);
        if (!rk) {
                rd_kafka_conf_destroy(conf);
                return -EINVAL;
        }
        if (client_check(rk, client, true, errbuf, errbuf_size) < 0) {
                rd_kafka_destroy(rk);
                return -EACCES;
        }
        *out = rk;
        return 0;
}

int bus_ensure_topics(const struct bus_cluster *cluster, const char *const *topics, size_t n_topics,
                      int partitions, char *errbuf, size_t errbuf_size) {
        struct client client = { 0 };
        rd_kafka_NewTopic_t **new_topics = NULL;
        rd_kafka_queue_t *queue = NULL;
        rd_kafka_event_t *event = NULL;
        rd_kafka_t *rk;
        int r = admin_new(cluster, &client, &rk, errbuf, errbuf_size);

        if (r < 0)
                return r;
        r = -EIO;

        new_topics = calloc(n_topics, sizeof(*new_topics));
        if (!new_topics)
                goto out;
        for (size_t i = 0; i < n_topics; i++) {
                new_topics[i] =
                        rd_kafka_NewTopic_new(topics[i], partitions, 1, errbuf, errbuf_size);
                if (!new_topics[i])
                        goto out;
        }
        queue = rd_kafka_queue_new(rk);
        rd_kafka_CreateTopics(rk, new_topics, n_topics, NULL, queue);
        event = rd_kafka_queue_poll(queue, 30000);
        if (!event) {
                snprintf(errbuf, errbuf_size, "Kafka did not answer CreateTopics within 30 s");
                goto out;
        }
        if (rd_kafka_event_error(event)) {
                snprintf(errbuf, errbuf_size, "%s", rd_kafka_event_error_string(event));
                goto out;
        }
        {
                size_t n;
                const rd_kafka_topic_result_t **results = rd_kafka_CreateTopics_result_topics(
                        rd_kafka_event_CreateTopics_result(event), &n);
                for (size_t i = 0; i < n; i++) {
                        rd_kafka_resp_err_t err = rd_kafka_topic_result_error(results[i]);
                        if (err && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                                snprintf(errbuf, errbuf_size, "%s: %s",
                                         rd_kafka_topic_result_name(results[i]),
                                         rd_kafka_topic_result_error_string(results[i]));
                                goto out;
                        }
                        if (!err)
                                log_info("kafka", "created topic %s with %d partitions",
                                         rd_kafka_topic_result_name(results[i]), partitions);
                }
        }
        r = 0;
out:
        if (event)
                rd_kafka_event_destroy(event);
        if (queue)
                rd_kafka_queue_destroy(queue);
        for (size_t i = 0; new_topics && i < n_topics; i++)
                if (new_topics[i])
                        rd_kafka_NewTopic_destroy(new_topics[i]);
        free(new_topics);
        rd_kafka_destroy(rk);
        return r;
}

int bus_check_topics(const struct bus_cluster *cluster, const char *const *topics, size_t n_topics,
                     int partitions, char *errbuf, size_t errbuf_size) {
        struct client client = { 0 };
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err;
        rd_kafka_t *rk;
        int missing = 0, r = admin_new(cluster, &client, &rk, errbuf, errbuf_size);

        if (r < 0)
                return r;
        /* All topics: asking for one by name may create it where the cluster auto-creates. */
        err = rd_kafka_metadata(rk, 1, NULL, &md, 10000);
        if (err) {
                snprintf(errbuf, errbuf_size, "metadata: %s", rd_kafka_err2str(err));
                rd_kafka_destroy(rk);
                return -EIO;
        }
        for (size_t i = 0; i < n_topics; i++) {
                const rd_kafka_metadata_topic_t *t = NULL;
                for (int j = 0; j < md->topic_cnt && !t; j++)
                        if (!strcmp(md->topics[j].topic, topics[i]) && !md->topics[j].err)
                                t = &md->topics[j];
                if (!t) {
                        log_warn("kafka", "topic %s is missing", topics[i]);
                        missing++;
                } else if (t->partition_cnt != partitions) {
                        log_info("kafka", "topic %s has %d partitions (--topic-partitions %d)",
                                 topics[i], t->partition_cnt, partitions);
                }
        }
        rd_kafka_metadata_destroy(md);
        rd_kafka_destroy(rk);
        return missing;
}

static struct bus_partition *partitions_of(const rd_kafka_topic_partition_list_t *list) {
        struct bus_partition *parts = calloc(list->cnt ? (size_t)list->cnt : 1, sizeof(*parts));
        for (int i = 0; parts && i < list->cnt; i++) {
                parts[i].partition = list->elems[i].partition;
                parts[i].offset = -1;
        }
        return parts;
}

/*
 * Logs and frees what an assignment change returned. It fails only when the
 * consumer is closing or has lost its assignment, and a rebalance follows.
 */
static void assignment_changed(const char *what, rd_kafka_error_t *error, rd_kafka_resp_err_t err) {
        if (error) {
                log_error("kafka", "%s: %s", what, rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
        } else if (err) {
                log_error("kafka", "%s: %s", what, rd_kafka_err2str(err));
        }
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *list, void *opaque) {
        struct bus_consumer *c = opaque;
        bool cooperative = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
        struct bus_partition *parts = partitions_of(list);
        size_t n = (size_t)list->cnt;

        if (!parts)
                abort(); /* cannot honour a rebalance without memory */

        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
                if (c->ops.on_assign(c->ctx, parts, n) < 0) {
                        /* Without a known start we must not read: hold them all. */
                        for (size_t i = 0; i < n; i++)
                                parts[i].offset = BUS_OFFSET_HOLD;
                }
                for (size_t i = 0; i < n; i++)
                        list->elems[i].offset = parts[i].offset == BUS_OFFSET_HOLD
                                                        ? RD_KAFKA_OFFSET_INVALID
                                                : parts[i].offset < 0 ? RD_KAFKA_OFFSET_BEGINNING
                                                                      : parts[i].offset;
                if (cooperative)
                        assignment_changed("assign", rd_kafka_incremental_assign(rk, list), 0);
                else
                        assignment_changed("assign", NULL, rd_kafka_assign(rk, list));
                /* A partition keeps its pause across a rebalance: say each one's anew
                 * (a failure is logged). */
                for (size_t i = 0; i < n; i++)
                        pause_or_resume(c, parts[i].partition, parts[i].offset == BUS_OFFSET_HOLD);
                log_info("kafka", "assigned %zu partitions of %s", n, c->topic);
        } else {
                c->ops.on_revoke(c->ctx, parts, n);
                if (cooperative)
                        assignment_changed("unassign", rd_kafka_incremental_unassign(rk, list), 0);
                else
                        assignment_changed("unassign", NULL, rd_kafka_assign(rk, NULL));
                log_info("kafka", "revoked %zu partitions of %s", n, c->topic);
        }
        free(parts);
}

int bus_consumer_new(const struct bus_cluster *cluster, const char *group, const char *topic,
                     const struct bus_consumer_ops *ops, void *ctx, struct bus_consumer **out,
                     char *errbuf, size_t errbuf_size) {
        struct bus_consumer *c;
        rd_kafka_conf_t *conf;
        rd_kafka_topic_partition_list_t *subscription;
        rd_kafka_resp_err_t err;

        c = calloc(1, sizeof(*c));
        if (!c || !(c->topic = strdup(topic))) {
                free(c);
                return -ENOMEM;
        }
        c->ops = *ops;
        c->ctx = ctx;

        conf = conf_new(&c->client);
        if (conf_set(conf, "group.id", group, errbuf, errbuf_size) < 0 ||
            conf_set(conf, "enable.auto.commit", "false", errbuf, errbuf_size) < 0 ||
            conf_set(conf, "enable.auto.offset.store", "false", errbuf, errbuf_size) < 0 ||
            conf_set(conf, "auto.offset.reset", "earliest", errbuf, errbuf_size) < 0 ||
            conf_set(conf, "partition.assignment.strategy", "cooperative-sticky", errbuf,
                     errbuf_size) < 0 ||
            conf_set(conf, "session.timeout.ms", "6000", errbuf, errbuf_size) < 0 ||
            conf_set(conf, "heartbeat.interval.ms", "1000", errbuf, errbuf_size) < 0 ||
            conf_set(conf, "reconnect.backoff.max.ms", "1000", errbuf, errbuf_size) < 0 ||
            conf_set_cluster(conf, cluster, errbuf, errbuf_size) < 0) {
                rd_kafka_conf_destroy(conf);
                goto fail;
        }
        rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);

        c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errbuf, errbuf_size);
        if (!c->rk) {
                rd_kafka_conf_destroy(conf);
                goto fail;
        }
        /* Before the main queue goes to the consumer's: the check polls it itself. */
        if (client_check(c->rk, &c->client, true, errbuf, errbuf_size) < 0) {
                rd_kafka_destroy(c->rk);
                free(c->topic);
                free(c);
                return -EACCES;
        }
        rd_kafka_poll_set_consumer(c->rk);

        subscription = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(subscription, topic, RD_KAFKA_PARTITION_UA);
        err = rd_kafka_subscribe(c->rk, subscription);
        rd_kafka_topic_partition_list_destroy(subscription);
        if (err) {
                snprintf(errbuf, errbuf_size, "subscribe to %s: %s", topic, rd_kafka_err2str(err));
                rd_kafka_destroy(c->rk);
                goto fail;
        }
        *out = c;
        return 0;

fail:
        free(c->topic);
        free(c);
        return -EINVAL;
}

struct bus_consumer *bus_consumer_free(struct bus_consumer *c) {
        if (!c)
                return NULL;
        rd_kafka_consumer_close(c->rk);
        rd_kafka_destroy(c->rk);
        free(c->topic);
        free(c);
        return NULL;
}

int bus_consumer_poll(struct bus_consumer *c, long timeout_ms, struct bus_message **out) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, (int)timeout_ms);

        if (!m)
                return 0;
        if (m->err) {
                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                        log_warn("kafka", "consume: %s", rd_kafka_message_errstr(m));
                rd_kafka_message_destroy(m);
                return 0;
        }
        *out = (struct bus_message *)m;
        return 1;
}

int bus_consumer_high_watermark(struct bus_consumer *c, int32_t partition, int64_t *high) {
        int64_t low;
        if (rd_kafka_get_watermark_offsets(c->rk, c->topic, partition, &low, high) !=
                    RD_KAFKA_RESP_ERR_NO_ERROR ||
            *high < 0)
                return -ENOENT;
        return 0;
}

int bus_consumer_seek(struct bus_consumer *c, int32_t partition, int64_t offset) {
        rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
        rd_kafka_error_t *error;
        int r = 0;

        rd_kafka_topic_partition_list_add(list, c->topic, partition)->offset =
                offset < 0 ? RD_KAFKA_OFFSET_BEGINNING : offset;
        /*
         * Without waiting: a seek waits on the partition's broker thread, and
         * one into a partition being revoked waited out its whole timeout (5 s
         * a partition, the loop standing still). The call still raises the
         * partition's version barrier before it returns, so nothing fetched
         * before it reaches the caller; where it lands, the caller sees by
         * the offset of the first message that comes.
         */
        error = rd_kafka_seek_partitions(c->rk, list, 0);
        /* Started, not failed: what an asynchronous seek says of a partition. */
        if (list->elems[0].err == RD_KAFKA_RESP_ERR__IN_PROGRESS)
                list->elems[0].err = RD_KAFKA_RESP_ERR_NO_ERROR;
        if (error || list->elems[0].err) {
                log_warn("kafka", "seek partition %d to %lld: %s", partition, (long long)offset,
                         error ? rd_kafka_error_string(error)
                               : rd_kafka_err2str(list->elems[0].err));
                if (error)
                        rd_kafka_error_destroy(error);
                r = -EIO;
        }
        rd_kafka_topic_partition_list_destroy(list);
        return r;
}

static int pause_or_resume(struct bus_consumer *c, int32_t partition, bool pause) {
        rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
        rd_kafka_resp_err_t err;

        rd_kafka_topic_partition_list_add(list, c->topic, partition);
        err = pause ? rd_kafka_pause_partitions(c->rk, list)
                    : rd_kafka_resume_partitions(c->rk, list);
        if (!err)
                err = list->elems[0].err;
        rd_kafka_topic_partition_list_destroy(list);
        if (err) {
                log_warn("kafka", "%s partition %d: %s", pause ? "pause" : "resume", partition,
                         rd_kafka_err2str(err));
                return -EIO;
        }
        return 0;
}

int bus_consumer_pause(struct bus_consumer *c, int32_t partition) {
        return pause_or_resume(c, partition, true);
}

int bus_consumer_resume(struct bus_consumer *c, int32_t partition) {
        return pause_or_resume(c, partition, false);
}

int32_t bus_message_partition(const struct bus_message *m) {
        return ((const rd_kafka_message_t *)m)->partition;
}

int64_t bus_message_offset(const struct bus_message *m) {
        return ((const rd_kafka_message_t *)m)->offset;
}

const void *bus_message_value(const struct bus_message *m, size_t *len) {
        const rd_kafka_message_t *rm = (const rd_kafka_message_t *)m;
        *len = rm->len;
        return rm->payload;
}

struct bus_message *bus_message_free(struct bus_message *m) {
        if (m)
                rd_kafka_message_destroy((rd_kafka_message_t *)m);
        return NULL;
}
