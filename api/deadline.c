/*
 * Deadlines on reading a request (deadline.h): the connections in a list
 * under one lock, each with its phase and when the phase began, and a
 * thread that looks once a second. The lock is what makes the cut safe:
 * libmicrohttpd says a connection is closed (and takes it out of the list
 * here) before it closes its socket, so the descriptor the thread shuts
 * down is never one already handed to someone else.
 *
 * Room: libmicrohttpd splits --http-max-connections between its threads
 * and a thread at its share stops accepting, so a new connection waits in
 * the kernel's queue until one of that thread's connections closes — for a
 * client whose pool keeps connections alive, up to the idle timeout, long
 * after it gave up. Near the share the thread's longest-idle connections
 * (waiting for a next request's head) are closed, as nginx reuses its idle
 * keep-alive connections; one a client is just reusing retries on a new one.
 * A request read after its connection was shut down (Linux still hands over
 * what the socket had received) is never handled: it could not be answered,
 * and ingest would have taken a report its client is told failed.
 */
#include "api/deadline.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "base/clock.h"
#include "base/log.h"
#include "metrics/metrics.h"

enum phase { PHASE_HEAD, PHASE_BODY, PHASE_BUSY };

static const char *const phase_names[] = { "head", "body", NULL };

struct worker {
        const void *daemon; /* libmicrohttpd's thread (its worker daemon) */
        unsigned open;      /* its connections not yet shut down here */
};

struct watched {
        struct watched *prev, *next;
        int fd;
        struct worker *worker;
        enum phase phase;
        double since; /* clock_mono_s() when the phase began */
        bool served;  /* answered a request: idle between requests */
        bool cut;     /* shut down once already */
};

#define MAX_WORKERS 64 /* libmicrohttpd's threads: --http-threads at most */

struct api_deadlines {
        double limit[2]; /* seconds, by phase: head, body */
        pthread_mutex_t lock;
        pthread_cond_t wake;
        struct watched *head; /* every open connection */
        struct worker workers[MAX_WORKERS];
        /* A thread with this many open makes room: its share of the limit,
         * less a reserve for the connections accepted meanwhile. */
        unsigned crowded;
        bool make_room; /* a worker reached crowded: the thread looks now */
        bool stop;
        pthread_t thread;
        struct metrics_counter *cut;         /* by phase */
        struct metrics_counter *idle_closed; /* to make room */
        struct metrics_fn *open_gauge;
};

/* Shuts the connection down: libmicrohttpd sees the end of the stream and
 * closes it. False when the socket would not be shut. */
static bool shut(struct watched *w) {
        w->cut = true;
        w->worker->open--;
        return shutdown(w->fd, SHUT_RDWR) == 0;
}

static void cut_late(struct api_deadlines *d, double now) {
        for (struct watched *w = d->head; w; w = w->next) {
                size_t at = w->phase;
                if (w->cut || w->phase == PHASE_BUSY || now - w->since <= d->limit[w->phase])
                        continue;
                if (shut(w))
                        metrics_counter_inc(d->cut, &at);
        }
}

/* The worker's longest-idle connection that may be closed: one between
 * requests, or one that has waited a second for its first head (the
 * connection just accepted is what the room is for). */
static struct watched *longest_idle(struct api_deadlines *d, const struct worker *k, double now) {
        struct watched *best = NULL;

        for (struct watched *w = d->head; w; w = w->next)
                if (w->worker == k && !w->cut && w->phase == PHASE_HEAD &&
                    (w->served || now - w->since >= 1) && (!best || w->since < best->since))
                        best = w;
        return best;
}

static void make_room(struct api_deadlines *d, double now) {
        for (struct worker *k = d->workers; k < d->workers + MAX_WORKERS && k->daemon; k++)
                while (k->open >= d->crowded) {
                        struct watched *w = longest_idle(d, k, now);
                        if (!w)
                                break; /* all busy: new ones wait in the kernel's queue */
                        if (shut(w))
                                metrics_counter_inc(d->idle_closed, NULL);
                }
        d->make_room = false;
}

static void *watch(void *arg) {
        struct api_deadlines *d = arg;

        pthread_mutex_lock(&d->lock);
        while (!d->stop) {
                struct timespec until;
                clock_gettime(CLOCK_MONOTONIC, &until);
                until.tv_sec += 1;
                if (!d->make_room)
                        pthread_cond_timedwait(&d->wake, &d->lock, &until);
                cut_late(d, clock_mono_s());
                make_room(d, clock_mono_s());
        }
        pthread_mutex_unlock(&d->lock);
        return NULL;
}

static double open_connections(void *arg) {
        struct api_deadlines *d = arg;
        unsigned open = 0;

        pthread_mutex_lock(&d->lock);
        for (const struct worker *k = d->workers; k < d->workers + MAX_WORKERS && k->daemon; k++)
                open += k->open;
        pthread_mutex_unlock(&d->lock);
        return open;
}

int api_deadlines_new(double head_s, double body_s, unsigned max_connections, unsigned threads,
                      struct metrics *m, struct api_deadlines **out) {
        const struct metrics_label by_phase[] = { { "phase", phase_names }, { NULL, NULL } };
        struct api_deadlines *d;
        pthread_condattr_t attr;
        unsigned share;
        int r;

        if (threads == 0 || threads > MAX_WORKERS || max_connections < threads)
                return -EINVAL;
        d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        d->limit[PHASE_HEAD] = head_s;
        d->limit[PHASE_BODY] = body_s;
        share = max_connections / threads; /* libmicrohttpd's split, rounded down */
        d->crowded = share - (share >= 64 ? share / 32 : share > 1);
        r = metrics_counter_register(m, "homing_http_connections_cut_total",
                                     "HTTP connections closed because a request's head or body "
                                     "took longer than --http-header-timeout-s or "
                                     "--http-body-timeout-s, by phase.",
                                     by_phase, &d->cut);
        if (r >= 0)
                r = metrics_counter_register(m, "homing_http_idle_connections_closed_total",
                                             "Keep-alive HTTP connections closed while idle to "
                                             "make room for new ones near "
                                             "--http-max-connections.",
                                             NULL, &d->idle_closed);
        if (r >= 0)
                r = metrics_gauge_fn(m, "homing_http_connections",
                                     "HTTP connections open (--http-max-connections at most).",
                                     open_connections, d, &d->open_gauge);
        if (r < 0) {
                free(d);
                return r;
        }
        pthread_mutex_init(&d->lock, NULL);
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&d->wake, &attr);
        pthread_condattr_destroy(&attr);
        r = -pthread_create(&d->thread, NULL, watch, d);
        if (r < 0) {
                metrics_fn_detach(d->open_gauge);
                pthread_cond_destroy(&d->wake);
                pthread_mutex_destroy(&d->lock);
                free(d);
                return r;
        }
        *out = d;
        return 0;
}

struct api_deadlines *api_deadlines_free(struct api_deadlines *d) {
        if (!d)
                return NULL;
        pthread_mutex_lock(&d->lock);
        d->stop = true;
        pthread_cond_signal(&d->wake);
        pthread_mutex_unlock(&d->lock);
        pthread_join(d->thread, NULL);
        metrics_fn_detach(d->open_gauge);
        if (d->head)
                log_error("api", "connections still watched after the server stopped");
        pthread_cond_destroy(&d->wake);
        pthread_mutex_destroy(&d->lock);
        free(d);
        return NULL;
}

/* The worker's slot, claimed at its first connection. Called locked. */
static struct worker *worker_of(struct api_deadlines *d, const void *daemon) {
        struct worker *k = d->workers;

        while (k < d->workers + MAX_WORKERS - 1 && k->daemon && k->daemon != daemon)
                k++;
        if (!k->daemon)
                k->daemon = daemon;
        return k;
}

void api_deadlines_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
        struct api_deadlines *d = cls;
        struct watched *w = *socket_context;

        if (code == MHD_CONNECTION_NOTIFY_STARTED) {
                const union MHD_ConnectionInfo *info =
                        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
                w = info ? calloc(1, sizeof(*w)) : NULL;
                if (!w)
                        return; /* not watched: only the idle timeout bounds it */
                w->fd = info->connect_fd;
                w->phase = PHASE_HEAD;
                w->since = clock_mono_s();
                info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_DAEMON);
                pthread_mutex_lock(&d->lock);
                w->worker = worker_of(d, info ? info->daemon : NULL);
                w->worker->open++;
                if (w->worker->open >= d->crowded && !d->make_room) {
                        d->make_room = true;
                        pthread_cond_signal(&d->wake);
                }
                w->next = d->head;
                if (d->head)
                        d->head->prev = w;
                d->head = w;
                pthread_mutex_unlock(&d->lock);
                *socket_context = w;
        } else if (code == MHD_CONNECTION_NOTIFY_CLOSED && w) {
                pthread_mutex_lock(&d->lock);
                if (!w->cut)
                        w->worker->open--;
                if (w->prev)
                        w->prev->next = w->next;
                else
                        d->head = w->next;
                if (w->next)
                        w->next->prev = w->prev;
                pthread_mutex_unlock(&d->lock);
                free(w);
                *socket_context = NULL;
        }
}

/* The connection enters `phase`; false when it was shut down here already. */
static bool enter(struct api_deadlines *d, struct MHD_Connection *conn, enum phase phase) {
        const union MHD_ConnectionInfo *info;
        struct watched *w;
        bool cut;

        if (!d)
                return true;
        info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        w = info ? info->socket_context : NULL;
        if (!w)
                return true;
        pthread_mutex_lock(&d->lock);
        w->phase = phase;
        w->since = clock_mono_s();
        w->served |= phase == PHASE_HEAD; /* answered: idle until the next head */
        cut = w->cut;
        pthread_mutex_unlock(&d->lock);
        return !cut;
}

void api_deadlines_head_read(struct api_deadlines *d, struct MHD_Connection *conn) {
        (void)enter(d, conn, PHASE_BODY);
}

bool api_deadlines_request_read(struct api_deadlines *d, struct MHD_Connection *conn) {
        return enter(d, conn, PHASE_BUSY);
}

void api_deadlines_answered(struct api_deadlines *d, struct MHD_Connection *conn) {
        enter(d, conn, PHASE_HEAD);
}
