/*
 * Deadlines on reading a request. libmicrohttpd's idle timeout starts again
 * with every byte, so a client that drips its request a byte at a time
 * holds its connection for ever. Here every connection is in one phase:
 * waiting for a request's head (from its accept, or since its last answer),
 * reading a body (from its head), or busy (the handler runs, waits on
 * Kafka, or answers: libmicrohttpd's own timeout). A thread looks each
 * second and cuts (shutdown(2); libmicrohttpd then closes it) a connection
 * that has spent longer than its phase allows.
 *
 * It also keeps room for new connections: near a libmicrohttpd thread's
 * share of --http-max-connections, that thread's longest-idle keep-alive
 * connections are closed (a thread at its share stops accepting).
 */
#pragma once

#include <microhttpd.h>
#include <stdbool.h>

#include "base/must-check.h"

struct api_deadlines;
struct metrics;

/* Starts the watch: the head must be whole within head_s, the body within
 * body_s of the head; max_connections are shared by threads (libmicrohttpd's
 * thread pool). Counted in m: homing_http_connections_cut_total,
 * homing_http_idle_connections_closed_total, homing_http_connections. */
MUST_CHECK int api_deadlines_new(double head_s, double body_s, unsigned max_connections,
                                 unsigned threads, struct metrics *m, struct api_deadlines **out);
/* Stops the thread. Call after the daemon has stopped. NULL. */
struct api_deadlines *api_deadlines_free(struct api_deadlines *d);

/* libmicrohttpd's MHD_OPTION_NOTIFY_CONNECTION callback; cls is the api_deadlines. */
void api_deadlines_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code);

/* The request's head has come: its body is next. */
void api_deadlines_head_read(struct api_deadlines *d, struct MHD_Connection *conn);
/* The request is whole: no deadline until it has been answered. False when
 * the connection was shut down meanwhile: the request must not be handled. */
bool api_deadlines_request_read(struct api_deadlines *d, struct MHD_Connection *conn);
/* The answer is out: the connection waits for the next request's head. */
void api_deadlines_answered(struct api_deadlines *d, struct MHD_Connection *conn);
