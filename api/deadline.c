/*
 * Deadlines on reading a request (deadline.h): the connections in a list
 * under one lock, each with its phase and when the phase began, and a
 * thread that looks once a second. The lock is what makes the cut safe:
 * libmicrohttpd says a connection is closed (and takes it out of the list
 * here) before it closes its socket, so the descriptor the thread shuts
 * down is never one already handed to someone else.
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

struct watched {
        struct watched *prev, *next;
        int fd;
        enum phase phase;
        double since; /* clock_mono_s() when the phase began */
        bool cut;     /* shut down once already */
};

struct api_deadlines {
        double limit[2]; /* seconds, by phase: head, body */
        pthread_mutex_t lock;
        pthread_cond_t wake;
        struct watched *head; /* every open connection */
        bool stop;
        pthread_t thread;
        struct metrics_counter *cut; /* by phase */
};

static void cut_late(struct api_deadlines *d, double now) {
        for (struct watched *w = d->head; w; w = w->next) {
                size_t at = w->phase;
                if (w->cut || w->phase == PHASE_BUSY || now - w->since <= d->limit[w->phase])
                        continue;
                /* libmicrohttpd sees the end of the stream and closes it. */
                w->cut = true;
                if (shutdown(w->fd, SHUT_RDWR) == 0)
                        metrics_counter_inc(d->cut, &at);
        }
}

static void *watch(void *arg) {
        struct api_deadlines *d = arg;

        pthread_mutex_lock(&d->lock);
        while (!d->stop) {
                struct timespec until;
                clock_gettime(CLOCK_MONOTONIC, &until);
                until.tv_sec += 1;
                pthread_cond_timedwait(&d->wake, &d->lock, &until);
                cut_late(d, clock_mono_s());
        }
        pthread_mutex_unlock(&d->lock);
        return NULL;
}

int api_deadlines_new(double head_s, double body_s, struct metrics *m, struct api_deadlines **out) {
        const struct metrics_label by_phase[] = { { "phase", phase_names }, { NULL, NULL } };
        struct api_deadlines *d = calloc(1, sizeof(*d));
        pthread_condattr_t attr;
        int r;

        if (!d)
                return -ENOMEM;
        d->limit[PHASE_HEAD] = head_s;
        d->limit[PHASE_BODY] = body_s;
        r = metrics_counter_register(m, "homing_http_connections_cut_total",
                                     "HTTP connections closed because a request's head or body "
                                     "took longer than --http-header-timeout-s or "
                                     "--http-body-timeout-s, by phase.",
                                     by_phase, &d->cut);
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
        if (d->head)
                log_error("api", "connections still watched after the server stopped");
        pthread_cond_destroy(&d->wake);
        pthread_mutex_destroy(&d->lock);
        free(d);
        return NULL;
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
                pthread_mutex_lock(&d->lock);
                w->next = d->head;
                if (d->head)
                        d->head->prev = w;
                d->head = w;
                pthread_mutex_unlock(&d->lock);
                *socket_context = w;
        } else if (code == MHD_CONNECTION_NOTIFY_CLOSED && w) {
                pthread_mutex_lock(&d->lock);
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

static void enter(struct api_deadlines *d, struct MHD_Connection *conn, enum phase phase) {
        const union MHD_ConnectionInfo *info;
        struct watched *w;

        if (!d)
                return;
        info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        w = info ? info->socket_context : NULL;
        if (!w)
                return;
        pthread_mutex_lock(&d->lock);
        w->phase = phase;
        w->since = clock_mono_s();
        pthread_mutex_unlock(&d->lock);
}

void api_deadlines_head_read(struct api_deadlines *d, struct MHD_Connection *conn) {
        enter(d, conn, PHASE_BODY);
}

void api_deadlines_request_read(struct api_deadlines *d, struct MHD_Connection *conn) {
        enter(d, conn, PHASE_BUSY);
}

void api_deadlines_answered(struct api_deadlines *d, struct MHD_Connection *conn) {
        enter(d, conn, PHASE_HEAD);
}
