/*
 * The HTTP server: libmicrohttpd with its own threads, suspend/resume for
 * requests that wait on Kafka, one request state per connection freed in
 * the completion callback. Routing is a table; bodies are bounded as they
 * arrive. The small read-only routes live here too.
 */
#include "api/api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/internal.h"
#include "base/config.h"
#include "base/log.h"
#include "bus/bus.h"
#include "geo/geo.h"
#include "store/store.h"

enum MHD_Result api_reply_json(struct request *req, unsigned status, json_t *doc) {
        char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
        struct MHD_Response *resp;
        enum MHD_Result ret;

        json_decref(doc);
        if (!text)
                return MHD_NO;
        resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
        MHD_add_response_header(resp, "Content-Type", "application/json");
        ret = MHD_queue_response(req->conn, status, resp);
        MHD_destroy_response(resp);
        return ret;
}

enum MHD_Result api_reply_problem(struct request *req, unsigned status, const char *slug,
                                  const char *title, const char *detail, json_t *extra) {
        char type[128];
        json_t *doc;
        char *text;
        struct MHD_Response *resp;
        enum MHD_Result ret;

        snprintf(type, sizeof(type), "urn:homing:problem:%s", slug);
        doc = json_pack("{s:s, s:s, s:i, s:s}", "type", type, "title", title, "status", status,
                        "detail", detail);
        if (extra) {
                json_object_update(doc, extra);
                json_decref(extra);
        }
        text = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(doc);
        if (!text)
                return MHD_NO;
        resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
        MHD_add_response_header(resp, "Content-Type", "application/problem+json");
        ret = MHD_queue_response(req->conn, status, resp);
        MHD_destroy_response(resp);
        return ret;
}

static enum MHD_Result reply_text(struct request *req, unsigned status, const char *type,
                                  char *text /* taken */) {
        struct MHD_Response *resp =
                MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
        enum MHD_Result ret;

        MHD_add_response_header(resp, "Content-Type", type);
        ret = MHD_queue_response(req->conn, status, resp);
        MHD_destroy_response(resp);
        return ret;
}

static enum MHD_Result handle_healthz(struct request *req) {
        return api_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static enum MHD_Result handle_readyz(struct request *req) {
        struct api *a = req->api;
        bool pg, kafka;
        int version = 0;

        pthread_mutex_lock(&a->db_lock);
        pg = store_schema_version(a->db, &version) == 0;
        pthread_mutex_unlock(&a->db_lock);
        kafka = bus_producer_reachable(a->producer, 2000);
        if (pg && kafka && version > 0)
                return api_reply_json(req, 200, json_pack("{s:s, s:i}", "status", "ready",
                                                          "schema_version", version));
        return api_reply_problem(req, 503, "not-ready", "Not ready",
                                 !pg ? "PostgreSQL is not reachable"
                                 : version == 0 ? "migrations are not applied: run homing migrate"
                                                : "Kafka is not reachable",
                                 json_pack("{s:b, s:b}", "postgres", pg, "kafka", kafka));
}

static enum MHD_Result handle_metrics(struct request *req) {
        static const char *const statuses[] = { "202", "400", "413", "415", "422", "503" };
        struct api *a = req->api;
        char *text = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);

        if (!f)
                return MHD_NO;
        fprintf(f, "# HELP homing_ingest_requests_total Location POSTs by HTTP status.\n"
                   "# TYPE homing_ingest_requests_total counter\n");
        for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
                fprintf(f, "homing_ingest_requests_total{status=\"%s\"} %lu\n", statuses[i],
                        atomic_load(&a->ingest_by_status[i]));
        fprintf(f, "# HELP homing_ingest_reports_total Location reports Kafka stored.\n"
                   "# TYPE homing_ingest_reports_total counter\n"
                   "homing_ingest_reports_total %lu\n",
                atomic_load(&a->reports_accepted));
        fprintf(f, "# HELP homing_kafka_queue_messages Reports waiting for Kafka.\n"
                   "# TYPE homing_kafka_queue_messages gauge\n"
                   "homing_kafka_queue_messages %ld\n",
                bus_producer_queued(a->producer));
        fclose(f);
        return reply_text(req, 200, "text/plain; version=0.0.4", text);
}

/* Parses a finite number from a query argument. */
static bool query_number(struct request *req, const char *name, double *out) {
        const char *v = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
        char *end;

        if (!v || !*v)
                return false;
        *out = strtod(v, &end);
        return *end == '\0' && isfinite(*out);
}

struct ranked {
        json_t *dc;
        double distance_m;
};

static int ranked_cmp(const void *pa, const void *pb) {
        const struct ranked *a = pa, *b = pb;
        if (a->distance_m != b->distance_m)
                return a->distance_m < b->distance_m ? -1 : 1;
        return strcmp(json_string_value(json_object_get(a->dc, "id")),
                      json_string_value(json_object_get(b->dc, "id")));
}

static json_t *datacenter_json(const struct store_result *res, size_t row) {
        return json_pack("{s:s, s:s, s:s?, s:s?, s:f, s:f, s:s, s:I, s:I}", "id",
                         store_text(res, row, 0), "name", store_text(res, row, 1), "provider",
                         store_text(res, row, 2), "city", store_text(res, row, 3), "lat",
                         store_double(res, row, 4), "lon", store_double(res, row, 5), "status",
                         store_text(res, row, 6), "capacity_bytes",
                         (json_int_t)store_int(res, row, 7), "used_bytes",
                         (json_int_t)store_int(res, row, 8));
}

/* The columns datacenter_json() reads, in its order. */
#define SELECT_DATACENTERS                                                               \
        "SELECT id, name, provider, city, lat, lon, status, capacity_bytes, used_bytes"  \
        " FROM datacenters"

/* Runs a query under the API's connection lock. */
static int api_query(struct api *a, const char *sql, int n, const char *const *params,
                     struct store_result **out) {
        int r;
        pthread_mutex_lock(&a->db_lock);
        r = store_exec(a->db, sql, n, params, out);
        pthread_mutex_unlock(&a->db_lock);
        return r;
}

static enum MHD_Result reply_unavailable_db(struct request *req) {
        return api_reply_problem(req, 503, "database-unavailable", "Database unavailable",
                                 "PostgreSQL did not answer; try again", NULL);
}

static enum MHD_Result handle_nearest(struct request *req) {
        double lat, lon, k = 1;
        struct store_result *res = NULL;
        struct ranked *ranked;
        json_t *items;
        size_t n;

        if (!query_number(req, "lat", &lat) || !query_number(req, "lon", &lon) ||
            !geo_point_valid(lat, lon))
                return api_reply_problem(req, 400, "invalid-query", "Invalid query",
                                         "lat in [-90, 90] and lon in [-180, 180] are required",
                                         NULL);
        if (MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "k") &&
            (!query_number(req, "k", &k) || k < 1 || k > 1000 || k != floor(k)))
                return api_reply_problem(req, 400, "invalid-query", "Invalid query",
                                         "k must be a whole number from 1 to 1000", NULL);
        if (api_query(req->api, SELECT_DATACENTERS " WHERE status = 'active'",
                      0, NULL, &res) < 0)
                return reply_unavailable_db(req);

        n = store_rows(res);
        ranked = calloc(n + 1, sizeof(*ranked));
        for (size_t i = 0; ranked && i < n; i++) {
                ranked[i].dc = datacenter_json(res, i);
                ranked[i].distance_m = geo_distance_m(lat, lon, store_double(res, i, 4),
                                                      store_double(res, i, 5));
        }
        store_result_free(res);
        if (!ranked)
                return MHD_NO;
        qsort(ranked, n, sizeof(*ranked), ranked_cmp);
        items = json_array();
        for (size_t i = 0; i < n; i++) {
                if (i < (size_t)k) {
                        json_object_set_new(ranked[i].dc, "distance_m",
                                            json_real(round(ranked[i].distance_m * 1000) / 1000));
                        json_array_append(items, ranked[i].dc);
                }
                json_decref(ranked[i].dc);
        }
        free(ranked);
        return api_reply_json(req, 200, json_pack("{s:o}", "items", items));
}

static enum MHD_Result handle_datacenters(struct request *req) {
        struct store_result *res = NULL;
        json_t *items;

        if (api_query(req->api, SELECT_DATACENTERS " ORDER BY id",
                      0, NULL, &res) < 0)
                return reply_unavailable_db(req);
        items = json_array();
        for (size_t i = 0; i < store_rows(res); i++)
                json_array_append_new(items, datacenter_json(res, i));
        store_result_free(res);
        return api_reply_json(req, 200, json_pack("{s:o}", "items", items));
}

static enum MHD_Result handle_transfers(struct request *req) {
        struct store_result *res = NULL;
        json_t *items;

        if (api_query(req->api,
                      "SELECT id, snapshot_id, from_dc, to_dc, template_id, template_present,"
                      " state, reason, bytes_total,"
                      " to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
                      " FROM transfers ORDER BY id DESC LIMIT 100",
                      0, NULL, &res) < 0)
                return reply_unavailable_db(req);
        items = json_array();
        for (size_t i = 0; i < store_rows(res); i++)
                json_array_append_new(
                        items,
                        json_pack("{s:I, s:s, s:s?, s:s, s:s, s:b, s:s, s:s, s:I, s:s}", "id",
                                  (json_int_t)store_int(res, i, 0), "snapshot_id",
                                  store_text(res, i, 1), "from_dc", store_text(res, i, 2),
                                  "to_dc", store_text(res, i, 3), "template_id",
                                  store_text(res, i, 4), "template_present",
                                  store_bool(res, i, 5), "state", store_text(res, i, 6),
                                  "reason", store_text(res, i, 7), "bytes_total",
                                  (json_int_t)store_int(res, i, 8), "created_at",
                                  store_text(res, i, 9)));
        store_result_free(res);
        return api_reply_json(req, 200, json_pack("{s:o}", "items", items));
}

static enum MHD_Result handle_dashboard(struct request *req) {
        static const char page[] =
                "<!doctype html><html><head><meta charset=utf-8><title>homing</title>"
                "<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:"
                "collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}"
                "</style></head><body><h1>homing</h1>"
                "<p>Snapshots follow their users. The full dashboard is on its way; meanwhile "
                "the latest transfers and the catalog, live from the REST API.</p>"
                "<h2>Transfers</h2><table id=t></table><h2>Datacenters</h2><table id=d></table>"
                "<script>"
                "function fill(id,rows,cols){const t=document.getElementById(id);"
                "t.innerHTML='<tr>'+cols.map(c=>'<th>'+c+'</th>').join('')+'</tr>';"
                "for(const r of rows){const tr=t.insertRow();for(const c of cols)"
                "tr.insertCell().textContent=r[c]==null?'':r[c]}}"
                "async function load(){const t=await(await fetch('/v1/transfers')).json();"
                "fill('t',t.items,['id','snapshot_id','from_dc','to_dc','state','created_at']);"
                "const d=await(await fetch('/v1/datacenters')).json();"
                "fill('d',d.items,['id','name','city','status','lat','lon'])}"
                "load();setInterval(load,3000);</script></body></html>";
        return reply_text(req, 200, "text/html; charset=utf-8", strdup(page));
}

struct route {
        const char *method;
        const char *path;
        enum MHD_Result (*handle)(struct request *req);
        bool has_body;
};

static const struct route routes[] = {
        { "POST", "/v1/locations", api_ingest, true },
        { "GET", "/v1/datacenters/nearest", handle_nearest, false },
        { "GET", "/v1/datacenters", handle_datacenters, false },
        { "GET", "/v1/transfers", handle_transfers, false },
        { "GET", "/healthz", handle_healthz, false },
        { "GET", "/readyz", handle_readyz, false },
        { "GET", "/metrics", handle_metrics, false },
        { "GET", "/", handle_dashboard, false },
};

static enum MHD_Result handle_not_found(struct request *req) {
        return api_reply_problem(req, 404, "not-found", "Not found", "no such resource", NULL);
}

static enum MHD_Result handle_wrong_method(struct request *req) {
        return api_reply_problem(req, 405, "method-not-allowed", "Method not allowed",
                                 "this resource does not take that method", NULL);
}

static void route_request(struct request *req, const char *method, const char *url) {
        bool path_known = false;

        for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
                if (strcmp(url, routes[i].path) != 0)
                        continue;
                path_known = true;
                if (!strcmp(method, routes[i].method)) {
                        req->handle = routes[i].handle;
                        return;
                }
        }
        req->handle = path_known ? handle_wrong_method : handle_not_found;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls) {
        struct api *a = cls;
        struct request *req = *con_cls;

        if (!req) {
                req = calloc(1, sizeof(*req));
                if (!req)
                        return MHD_NO;
                req->api = a;
                req->conn = conn;
                route_request(req, method, url);
                *con_cls = req;
                return MHD_YES;
        }
        if (*upload_size) {
                size_t n = *upload_size;
                *upload_size = 0;
                if (req->body_too_large || req->body_len + n > (size_t)a->cfg->max_body_bytes) {
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
        return req->handle(req);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode code) {
        struct request *req = *con_cls;

        if (req) {
                free(req->body);
                free(req);
                *con_cls = NULL;
        }
}

static int parse_listen(const char *listen, struct sockaddr_in *addr) {
        char host[64];
        const char *colon = strrchr(listen, ':');
        char *end;
        long port;

        if (!colon || (size_t)(colon - listen) >= sizeof(host))
                return -EINVAL;
        memcpy(host, listen, (size_t)(colon - listen));
        host[colon - listen] = '\0';
        port = strtol(colon + 1, &end, 10);
        if (*end || port < 0 || port > 65535)
                return -EINVAL;
        memset(addr, 0, sizeof(*addr));
        addr->sin_family = AF_INET;
        addr->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, strcmp(host, "localhost") ? host : "127.0.0.1", &addr->sin_addr) != 1)
                return -EINVAL;
        return 0;
}

int api_start(const struct config *cfg, struct api **out) {
        struct sockaddr_in addr;
        const union MHD_DaemonInfo *info;
        char errbuf[512];
        struct api *a;
        int r;

        if (parse_listen(cfg->listen, &addr) < 0) {
                log_error("api", "listen address '%s' is not IPv4 host:port", cfg->listen);
                return -EINVAL;
        }
        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->cfg = cfg;
        pthread_mutex_init(&a->db_lock, NULL);

        r = store_connect(cfg->pg_dsn, &a->db);
        if (r < 0)
                goto fail;
        r = bus_producer_new(cfg->kafka_brokers, cfg->produce_timeout_ms, api_ingest_delivered,
                             &a->producer, errbuf, sizeof(errbuf));
        if (r < 0) {
                log_error("api", "cannot create the Kafka producer: %s", errbuf);
                goto fail;
        }

        a->daemon = MHD_start_daemon(
                MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                        MHD_USE_ERROR_LOG,
                0, NULL, NULL, on_request, a, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)cfg->http_threads,
                MHD_OPTION_NOTIFY_COMPLETED, on_completed, a, MHD_OPTION_CONNECTION_TIMEOUT,
                (unsigned int)30, MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned int)1,
                MHD_OPTION_END);
        if (!a->daemon) {
                log_error("api", "cannot listen on %s", cfg->listen);
                r = -EADDRINUSE;
                goto fail;
        }
        info = MHD_get_daemon_info(a->daemon, MHD_DAEMON_INFO_BIND_PORT);
        a->port = info ? info->port : ntohs(addr.sin_port);
        log_info("api", "listening on http://%s:%u", inet_ntoa(addr.sin_addr), a->port);
        *out = a;
        return 0;

fail:
        api_stop(a);
        return r;
}

uint16_t api_port(const struct api *a) {
        return a->port;
}

struct api *api_stop(struct api *a) {
        if (!a)
                return NULL;
        if (a->daemon) {
                /* Stop accepting; suspended requests resume as Kafka reports on them. */
                MHD_quiesce_daemon(a->daemon);
                if (a->producer && bus_producer_flush(a->producer, a->cfg->produce_timeout_ms + 1000) < 0)
                        log_warn("api", "reports still in flight at shutdown");
                usleep(100 * 1000);
                MHD_stop_daemon(a->daemon);
        }
        a->producer = bus_producer_free(a->producer);
        a->db = store_free(a->db);
        pthread_mutex_destroy(&a->db_lock);
        free(a);
        return NULL;
}
