/*
 * The HTTP server: libmicrohttpd with its own threads (HTTPS through GnuTLS
 * when given a certificate and key), suspend/resume for requests that wait
 * on Kafka, one request state per connection freed in the completion
 * callback. A request is routed on its first call, its body gathered and
 * bounded as it arrives, its access checked once it is whole, and then its
 * route's flow runs (router.c has the table, flow.c the flow; the
 * resources have a file each).
 */
#include "api/api.h"

#include <errno.h>
#include <math.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/access.h"
#include "api/bucket.h"
#include "api/deadline.h"
#include "api/flow.h"
#include "api/ingest.h"
#include "api/pool.h"
#include "api/ready.h"
#include "api/reply.h"
#include "api/route.h"
#include "api/request.h"
#include "api/router.h"
#include "api/state.h"
#include "base/config.h"
#include "base/log.h"
#include "base/net.h"
#include "bus/bus.h"
#include "geo/geo.h"
#include "metrics/metrics.h"

/* Ingest's answers are counted, and it never touches PostgreSQL; the other device routes do. */
static bool is_ingest(const struct request *req) {
        return req->route && req->route->handle == api_ingest;
}

/* The route's access: true, or false after answering 401 or 403 (counted for ingest). */
static bool check(struct request *req, enum MHD_Result *reply) {
        if (!api_check_access(req, reply)) {
                if (is_ingest(req))
                        api_count_ingest(req, req->who.kind == PRINCIPAL_NONE ? 401 : 403);
                return false;
        }
        req->checked = true;
        return true;
}

/*
 * On a request's first call, when only its head has come: refuse what the
 * head already condemns — a token that does not pass (401, 403), a
 * Content-Length over --max-body-bytes (413) — before a byte of the body is
 * read or buffered. libmicrohttpd then closes the connection unread.
 */
static enum MHD_Result refuse_early(struct request *req) {
        struct api *a = req->api;
        const char *length;
        enum MHD_Result ret = MHD_YES;

        req->body_max =
                req->route && req->route->max_body ? req->route->max_body : a->cfg->max_body_bytes;
        if (!req->route)
                return MHD_YES;
        if (!check(req, &ret))
                goto out;
        length = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
                                             MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (length && strtoull(length, NULL, 10) > (unsigned long long)req->body_max) {
                char detail[96];
                snprintf(detail, sizeof(detail), "the body exceeds %ld bytes", req->body_max);
                if (is_ingest(req))
                        api_count_ingest(req, 413);
                ret = api_reply_problem(req, 413, "body-too-large", "Request body too large",
                                        detail, NULL);
        }
out:
        api_db_release(&a->pool, req->db);
        req->db = NULL;
        return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls) {
        struct api *a = cls;
        struct request *req = *con_cls;
        enum MHD_Result ret;

        if (!req) {
                req = calloc(1, sizeof(*req));
                if (!req)
                        return MHD_NO;
                req->api = a;
                req->conn = conn;
                req->started_at = metrics_now();
                req->method = method;
                api_deadlines_head_read(a->deadlines, conn);
                api_route(req, method, url);
                *con_cls = req;
                return refuse_early(req);
        }
        if (*upload_size) {
                size_t n = *upload_size;
                *upload_size = 0;
                if (req->body_too_large || req->body_len + n > (size_t)req->body_max) {
                        /* Keep reading, keep nothing: the answer is 413. */
                        req->body_too_large = true;
                        return MHD_YES;
                }
                if (req->body_len + n + 1 > req->body_cap) {
                        size_t cap = req->body_cap ? req->body_cap : 1024;
                        char *grown;
                        while (cap < req->body_len + n + 1)
                                cap *= 2;
                        grown = realloc(req->body, cap);
                        if (!grown)
                                return MHD_NO;
                        req->body = grown;
                        req->body_cap = cap;
                }
                memcpy(req->body + req->body_len, upload_data, n);
                req->body_len += n;
                req->body[req->body_len] = '\0';
                return MHD_YES;
        }
        /* The whole request is here (or, for ingest, Kafka has answered). A
         * connection shut down meanwhile cannot carry an answer: handle nothing. */
        if (!api_deadlines_request_read(a->deadlines, conn))
                return MHD_NO;
        if (req->route && !req->checked && !check(req, &ret))
                goto out;
        /* The handlers of these routes read PostgreSQL through req->db; the
         * access check, made before the body came, holds no connection. */
        if (req->route && req->route->access != ACCESS_PUBLIC && !is_ingest(req) && !req->db)
                req->db = api_db_acquire(&a->pool);
        ret = api_flow(req);
out:
        api_db_release(&a->pool, req->db);
        req->db = NULL;
        return ret;
}

/* Every connection is a file descriptor; beside them the process holds its
 * Kafka and PostgreSQL sockets and a few files. A limit below that would
 * show only under load, as accepts failing: raise the soft limit as far as
 * the hard one allows, and refuse to start if that is not enough. */
enum { FILES_BESIDE_CONNECTIONS = 128 };

static int room_for_connections(long max_connections) {
        struct rlimit rl;
        rlim_t needed = (rlim_t)max_connections + FILES_BESIDE_CONNECTIONS;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return -errno;
        if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < needed) {
                rl.rlim_cur =
                        rl.rlim_max == RLIM_INFINITY || rl.rlim_max > needed ? needed : rl.rlim_max;
                if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                        return -errno;
        }
        if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < needed) {
                log_error("api",
                          "--http-max-connections %ld needs %lu open files, and this process "
                          "may open %lu: raise its limit (ulimit -n, systemd's LimitNOFILE) "
                          "or lower --http-max-connections",
                          max_connections, (unsigned long)needed, (unsigned long)rl.rlim_cur);
                return -EMFILE;
        }
        return 0;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode code) {
        struct request *req = *con_cls;
        struct api *a = cls;

        api_deadlines_answered(a->deadlines, conn);
        if (req) {
                api_ingest_unsuspended(req);
                api_db_release(&req->api->pool, req->db);
                free(req->body);
                free(req);
                *con_cls = NULL;
        }
}

/* Reads a whole PEM file. NULL (logged) when it cannot. */
static char *read_pem(const char *path) {
        char err[300];
        char *text = net_read_pem(path, err, sizeof(err));
        if (!text)
                log_error("api", "%s", err);
        return text;
}

static int tls_load(struct api *a, const struct config *cfg) {
        if (!*cfg->tls_cert && !*cfg->tls_key)
                return 0;
        if (!*cfg->tls_cert || !*cfg->tls_key) {
                log_error("api", "HTTPS needs both --tls-cert and --tls-key");
                return -EINVAL;
        }
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
                log_error("api", "this libmicrohttpd has no TLS support");
                return -ENOTSUP;
        }
        a->tls_cert = read_pem(cfg->tls_cert);
        a->tls_key = read_pem(cfg->tls_key);
        return a->tls_cert && a->tls_key ? 0 : -EINVAL;
}

static double kafka_queue_depth(void *userdata) {
        struct api *a = userdata;
        return a->producer ? (double)bus_producer_queued(a->producer) : NAN;
}

/* The API's series in the process's registry (its own when none was given). */
static int register_metrics(struct api *a) {
        const struct metrics_label by_status[] = { { "status", api_ingest_statuses },
                                                   { NULL, NULL } };
        struct metrics *m = a->hooks.metrics;
        int r;

        if (!m) {
                r = metrics_new(&a->own_metrics);
                if (r < 0)
                        return r;
                m = a->hooks.metrics = a->own_metrics;
        }
        if ((r = metrics_counter_register(m, "homing_ingest_requests_total",
                                          "Location POSTs answered, by HTTP status.", by_status,
                                          &a->ingest_requests)) < 0 ||
            (r = metrics_counter_register(m, "homing_ingest_reports_total",
                                          "Location reports Kafka stored (answered 202).", NULL,
                                          &a->reports_accepted)) < 0 ||
            (r = metrics_counter_register(m, "homing_ingest_rate_limited_reports_total",
                                          "Location reports refused (429) because their device "
                                          "went over --ingest-rate-per-device.",
                                          NULL, &a->rate_limited)) < 0 ||
            (r = metrics_counter_register(m, "homing_auth_failures_total",
                                          "Requests refused for a missing or unknown token.", NULL,
                                          &a->auth_failures)) < 0 ||
            (r = metrics_histogram_register(m, "homing_ingest_duration_seconds",
                                            "Location POSTs, from the request to the answer.", NULL,
                                            metrics_buckets_request, METRICS_N_BUCKETS_REQUEST,
                                            &a->ingest_seconds)) < 0 ||
            (r = metrics_histogram_register(m, "homing_kafka_produce_duration_seconds",
                                            "From producing a request's reports to Kafka's last "
                                            "delivery report.",
                                            NULL, metrics_buckets_request,
                                            METRICS_N_BUCKETS_REQUEST, &a->produce_seconds)) < 0 ||
            (r = metrics_gauge_fn(m, "homing_kafka_queue_messages",
                                  "Reports handed to the producer and not yet reported on.",
                                  kafka_queue_depth, a, &a->kafka_queue)) < 0)
                log_error("api", "cannot register the API's metrics: %s", strerror(-r));
        return r;
}

int api_start(const struct config *cfg, const struct api_hooks *hooks, struct api **out) {
        struct sockaddr_storage addr;
        const union MHD_DaemonInfo *info;
        char errbuf[512];
        unsigned int flags =
                MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
        struct api *a;
        int r;

        if (net_parse_listen(cfg->listen, &addr, errbuf, sizeof(errbuf)) < 0) {
                log_error("api", "--listen: %s", errbuf);
                return -EINVAL;
        }
        if (addr.ss_family == AF_INET6)
                flags |= MHD_USE_IPv6;
        /* poll() is there to compare with (README, Measured performance). */
        if (!strcmp(cfg->http_event_loop, "epoll"))
                flags |= MHD_USE_EPOLL;
        else if (!strcmp(cfg->http_event_loop, "poll"))
                flags |= MHD_USE_POLL;
        else {
                log_error("api", "--http-event-loop: '%s' is neither poll nor epoll",
                          cfg->http_event_loop);
                return -EINVAL;
        }
        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->cfg = cfg;
        pthread_mutex_init(&a->sites_lock, NULL);
        pthread_mutex_init(&a->ready_lock, NULL);
        pthread_mutex_init(&a->tokens_lock, NULL);
        if (hooks)
                a->hooks = *hooks;
        r = register_metrics(a);
        if (r < 0)
                goto fail;

        r = auth_keyring_new(cfg->device_token_keys, &a->device_keys, errbuf, sizeof(errbuf));
        if (r < 0) {
                log_error("api", "--device-token-keys: %s", errbuf);
                goto fail;
        }
        if (auth_keyring_size(a->device_keys) == 0)
                log_warn("api", "no device token keys (--device-token-keys): every location "
                                "report will be refused with 401; homing token key makes one");
        if ((r = tls_load(a, cfg)) < 0)
                goto fail;
        r = api_pool_init(&a->pool, cfg->pg_dsn, (size_t)cfg->db_pool_size,
                          cfg->pg_statement_timeout_ms);
        if (r < 0)
                goto fail;
        r = bus_producer_new(&(struct bus_cluster){ cfg->kafka_brokers, cfg->kafka_property,
                                                    cfg->kafka_properties_file },
                             &(struct bus_batching){ cfg->kafka_linger_ms, cfg->kafka_batch_bytes,
                                                     cfg->kafka_compression },
                             cfg->produce_timeout_ms, api_ingest_delivered, &a->producer, errbuf,
                             sizeof(errbuf));
        if (r < 0) {
                log_error("api", "cannot create the Kafka producer: %s", errbuf);
                goto fail;
        }
        r = bus_topic_new(a->producer, cfg->topic_locations, &a->locations, errbuf, sizeof(errbuf));
        if (r < 0) {
                log_error("api", "--topic-locations: %s", errbuf);
                goto fail;
        }
        if ((r = api_ready_start(a)) < 0)
                goto fail;
        if (cfg->ingest_rate_per_device > 0 &&
            (r = api_buckets_new(cfg->ingest_rate_per_device, cfg->ingest_burst_per_device, 65536,
                                 &a->buckets)) < 0)
                goto fail;

        if (cfg->http_max_connections < cfg->http_threads) {
                log_error("api",
                          "--http-max-connections (%ld) is below --http-threads (%ld): "
                          "each thread holds its share of the connections",
                          (long)cfg->http_max_connections, (long)cfg->http_threads);
                r = -EINVAL;
                goto fail;
        }
        if ((r = room_for_connections(cfg->http_max_connections)) < 0)
                goto fail;
        if ((r = api_deadlines_new((double)cfg->http_header_timeout_s,
                                   (double)cfg->http_body_timeout_s,
                                   (unsigned)cfg->http_max_connections, (unsigned)cfg->http_threads,
                                   a->hooks.metrics, &a->deadlines)) < 0)
                goto fail;
        {
                struct MHD_OptionItem options[16] = {
                        { MHD_OPTION_SOCK_ADDR, 0, &addr },
                        { MHD_OPTION_THREAD_POOL_SIZE, cfg->http_threads, NULL },
                        { MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, a },
                        { MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)api_deadlines_notify,
                          a->deadlines },
                        /* idle: restarts with every byte; deadline.c bounds the rest */
                        { MHD_OPTION_CONNECTION_TIMEOUT, 30, NULL },
                        { MHD_OPTION_CONNECTION_LIMIT, cfg->http_max_connections, NULL },
                        { MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->http_max_connections_per_ip,
                          NULL },
                        { MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, NULL },
                };
                size_t n = 8;

                if (a->tls_cert) {
                        flags |= MHD_USE_TLS;
                        options[n++] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_CERT, 0,
                                                                a->tls_cert };
                        options[n++] =
                                (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_KEY, 0, a->tls_key };
                        options[n++] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_PRIORITIES, 0,
                                                                (void *)NET_TLS_PRIORITIES };
                }
                options[n] = (struct MHD_OptionItem){ MHD_OPTION_END, 0, NULL };
                a->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, a, MHD_OPTION_ARRAY,
                                             options, MHD_OPTION_END);
        }
        if (!a->daemon) {
                log_error("api", "cannot listen on %s%s", cfg->listen,
                          a->tls_cert ? " (or the certificate and key do not fit)" : "");
                r = -EADDRINUSE;
                goto fail;
        }
        info = MHD_get_daemon_info(a->daemon, MHD_DAEMON_INFO_BIND_PORT);
        a->port = info ? info->port : 0;
        log_info("api", "listening on %s://%s (port %u)", a->tls_cert ? "https" : "http",
                 cfg->listen, a->port);
        *out = a;
        return 0;

fail:
        api_stop(a);
        return r;
}

uint16_t api_port(const struct api *a) {
        return a->port;
}

/*
 * Before the daemon stops, no connection may be suspended (libmicrohttpd
 * aborts the process otherwise): stop accepting, let ingest suspend nothing
 * new (keep-alive connections still send requests; they get 503), and wait
 * for the suspended ones to resume. Kafka reports on each of their messages
 * within the produce timeout, stored or not, so the wait is bounded.
 */
static void drain(struct api *a) {
        double deadline = metrics_now() + (double)a->cfg->produce_timeout_ms / 1000 + 2;
        int left;

        atomic_store(&a->stopping, true);
        MHD_quiesce_daemon(a->daemon);
        while ((left = atomic_load(&a->suspended)) > 0 && metrics_now() < deadline) {
                /* The producer's thread polls too: flushing only hurries it, and
                 * what the flush leaves queued is what this loop waits for. */
                if (!a->producer || bus_producer_flush(a->producer, 100) == 0)
                        usleep(10 * 1000);
        }
        if (left > 0)
                log_error("api", "%d requests still wait on Kafka at shutdown", left);
        /* Let the last answers go out before the connections close. */
        usleep(100 * 1000);
}

struct api *api_stop(struct api *a) {
        if (!a)
                return NULL;
        if (a->daemon) {
                drain(a);
                MHD_stop_daemon(a->daemon);
        }
        a->deadlines = api_deadlines_free(a->deadlines);
        api_ready_stop(a);
        metrics_fn_detach(a->kafka_queue);
        a->locations = bus_topic_free(a->locations);
        a->producer = bus_producer_free(a->producer);
        api_pool_fini(&a->pool);
        a->device_keys = auth_keyring_free(a->device_keys);
        a->buckets = api_buckets_free(a->buckets);
        free(a->tls_cert);
        if (a->tls_key) {
                explicit_bzero(a->tls_key, strlen(a->tls_key));
                free(a->tls_key);
        }
        metrics_free(a->own_metrics);
        geo_index_unref(a->sites);
        pthread_mutex_destroy(&a->sites_lock);
        pthread_mutex_destroy(&a->ready_lock);
        pthread_mutex_destroy(&a->tokens_lock);
        if (a->ready_wake_init)
                pthread_cond_destroy(&a->ready_wake);
        free(a);
        return NULL;
}
