/*
 * The long-running subcommands: serve (the HTTP API), schedule (the
 * consumer and the outbox relay), relay alone, and standalone (all of it in
 * one process, for a laptop). SIGINT and SIGTERM stop them cleanly.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

#include "api/api.h"
#include "base/config.h"
#include "base/log.h"
#include "cmd/commands.h"
#include "scheduler/scheduler.h"

static atomic_bool stop_requested;

static void on_signal(int sig) {
        atomic_store(&stop_requested, true);
}

static void install_signals(void) {
        struct sigaction sa = { .sa_handler = on_signal };
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
}

struct worker {
        const struct config *cfg;
        int (*run)(const struct config *cfg, atomic_bool *stop);
        pthread_t thread;
        int result;
};

static void *worker_main(void *arg) {
        struct worker *w = arg;
        w->result = w->run(w->cfg, &stop_requested);
        /* One part failing to start stops the process: half a homing misleads. */
        if (w->result < 0)
                atomic_store(&stop_requested, true);
        return NULL;
}

/* Runs the API (if `serve`) and the given workers until a signal. */
static int run_parts(const struct config *cfg, bool serve, struct worker *workers, size_t n) {
        struct api *api = NULL;
        int r = 0;

        install_signals();
        if (serve && api_start(cfg, &api) < 0)
                return 1;
        for (size_t i = 0; i < n; i++)
                pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);
        while (!atomic_load(&stop_requested))
                pause();
        log_info("homing", "stopping");
        for (size_t i = 0; i < n; i++) {
                pthread_join(workers[i].thread, NULL);
                if (workers[i].result < 0)
                        r = 1;
        }
        api_stop(api);
        return r;
}

static int load(struct config *cfg, int argc, char **argv, const char *usage) {
        int r = config_load(cfg, argc, argv, usage);
        return r < 0 ? 2 : r == 1 ? 0 : -1;
}

int cmd_serve(int argc, char **argv) {
        struct config cfg;
        int r = load(&cfg, argc, argv, "homing serve [options]: the HTTP API");
        if (r >= 0)
                return r;
        r = run_parts(&cfg, true, NULL, 0);
        config_fini(&cfg);
        return r;
}

int cmd_schedule(int argc, char **argv) {
        struct config cfg;
        int r = load(&cfg, argc, argv,
                     "homing schedule [options]: consume reports, decide, publish the outbox");
        if (r >= 0)
                return r;
        {
                struct worker workers[] = { { &cfg, scheduler_run, 0, 0 },
                                            { &cfg, relay_run, 0, 0 } };
                r = run_parts(&cfg, false, workers, 2);
        }
        config_fini(&cfg);
        return r;
}

int cmd_relay(int argc, char **argv) {
        struct config cfg;
        int r = load(&cfg, argc, argv, "homing relay [options]: publish the outbox to Kafka");
        if (r >= 0)
                return r;
        {
                struct worker workers[] = { { &cfg, relay_run, 0, 0 } };
                r = run_parts(&cfg, false, workers, 1);
        }
        config_fini(&cfg);
        return r;
}

int cmd_standalone(int argc, char **argv) {
        struct config cfg;
        int r = load(&cfg, argc, argv,
                     "homing standalone [options]: API, scheduler and relay in one process");
        if (r >= 0)
                return r;
        {
                struct worker workers[] = { { &cfg, scheduler_run, 0, 0 },
                                            { &cfg, relay_run, 0, 0 } };
                r = run_parts(&cfg, true, workers, 2);
        }
        config_fini(&cfg);
        return r;
}
