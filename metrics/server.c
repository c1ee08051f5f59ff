/*
 * A small HTTP endpoint for processes that do not run the API: GET
 * /metrics and GET /healthz, one libmicrohttpd daemon with its own thread.
 * /metrics says how the process works (partitions, lag, backlog): beyond
 * loopback it is served only to a scraper with the bearer token. It never
 * logs: failures come back in the caller's error buffer.
 */
#include "metrics/metrics.h"

#include "base/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <nettle/memops.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct metrics_server {
        struct MHD_Daemon *daemon;
        struct metrics *registry;
        char *token; /* NULL: no token asked */
        int port;
};

static bool is_loopback(const struct sockaddr_storage *addr) {
        if (addr->ss_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
                return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
        }
        if (addr->ss_family == AF_INET6) {
                const struct in6_addr *a = &((const struct sockaddr_in6 *)addr)->sin6_addr;
                return IN6_IS_ADDR_LOOPBACK(a) ||
                       (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
        }
        return false;
}

/* The bearer token, compared in constant time. */
static bool authorized(const struct metrics_server *s, struct MHD_Connection *conn) {
        const char *header, *given;
        size_t n;

        if (!s->token)
                return true;
        header = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
        if (!header || strncmp(header, "Bearer ", 7) != 0)
                return false;
        given = header + 7;
        n = strlen(s->token);
        return strlen(given) == n && memeql_sec(given, s->token, n);
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type,
                             char *body, size_t len) {
        struct MHD_Response *resp =
                MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
        enum MHD_Result ret;

        if (!resp) {
                free(body);
                return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", type);
        MHD_add_response_header(resp, "Cache-Control", "no-store");
        if (status == 401)
                MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
        ret = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
        struct metrics_server *s = cls;
        char *text;
        size_t len;

        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
                text = strdup("{\"status\":405,\"title\":\"Method not allowed\"}");
                return text ? reply(conn, 405, "application/problem+json", text, strlen(text))
                            : MHD_NO;
        }
        if (!strcmp(url, "/metrics")) {
                if (!authorized(s, conn)) {
                        text = strdup("{\"status\":401,\"title\":\"Unauthorized\","
                                      "\"detail\":\"/metrics wants the scrape token\"}");
                        return text ? reply(conn, 401, "application/problem+json", text,
                                            strlen(text))
                                    : MHD_NO;
                }
                if (metrics_render(s->registry, &text, &len) < 0)
                        return MHD_NO;
                return reply(conn, 200, METRICS_CONTENT_TYPE, text, len);
        }
        if (!strcmp(url, "/healthz")) {
                text = strdup("{\"status\":\"ok\"}");
                return text ? reply(conn, 200, "application/json", text, strlen(text)) : MHD_NO;
        }
        text = strdup("{\"status\":404,\"title\":\"Not found\"}");
        return text ? reply(conn, 404, "application/problem+json", text, strlen(text)) : MHD_NO;
}

int metrics_server_start(struct metrics *m, const char *listen, const char *token,
                         struct metrics_server **out, char *errbuf, size_t errbuf_size) {
        struct sockaddr_storage addr = { 0 };
        struct metrics_server *s;
        const union MHD_DaemonInfo *info;
        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
        int r;

        r = net_parse_listen(listen, &addr, errbuf, errbuf_size);
        if (r < 0)
                return r;
        if ((!token || !token[0]) && !is_loopback(&addr)) {
                snprintf(errbuf, errbuf_size,
                         "serving /metrics beyond loopback needs a scrape token "
                         "(--metrics-token-file)");
                return -EPERM;
        }
        s = calloc(1, sizeof(*s));
        if (!s || (token && token[0] && !(s->token = strdup(token)))) {
                free(s);
                snprintf(errbuf, errbuf_size, "out of memory");
                return -ENOMEM;
        }
        s->registry = m;
        if (addr.ss_family == AF_INET6)
                flags |= MHD_USE_IPv6;
        s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR,
                                     (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_TIMEOUT,
                                     (unsigned int)10, MHD_OPTION_CONNECTION_LIMIT,
                                     (unsigned int)16, MHD_OPTION_END);
        if (!s->daemon) {
                snprintf(errbuf, errbuf_size, "cannot listen on %s", listen);
                free(s->token);
                free(s);
                return -EADDRINUSE;
        }
        info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
        s->port = info ? (int)info->port : 0;
        *out = s;
        return 0;
}

int metrics_server_port(const struct metrics_server *s) {
        return s ? s->port : 0;
}

struct metrics_server *metrics_server_free(struct metrics_server *s) {
        if (!s)
                return NULL;
        MHD_stop_daemon(s->daemon);
        free(s->token);
        free(s);
        return NULL;
}
