/*
 * The long-running subcommands: serve (the HTTP API), schedule (the
 * consumer and the outbox relay), relay alone, and standalone (all of it in
 * one process, for a laptop). SIGINT and SIGTERM stop them cleanly.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "api/api.h"
#include "base/config.h"
#include "base/log.h"
#include "cmd/commands.h"
#include "metrics/metrics.h"
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
        int (*run)(const struct config *cfg, struct metrics *metrics, atomic_bool *stop);
        struct metrics *metrics;
        pthread_t thread;
        int result;
};

static void *worker_main(void *arg) {
        struct worker *w = arg;
        w->result = w->run(w->cfg, w->metrics, &stop_requested);
        /* One part failing to start stops the process: half a homing misleads. */
        if (w->result < 0)
                atomic_store(&stop_requested, true);
        return NULL;
}

/* The registry every part of the process counts into, with what the process is. */
static int metrics_setup(struct metrics **out) {
        static const char *versions[] = { HOMING_VERSION, NULL };
        struct metrics_gauge *info;
        int r = metrics_new(out);

        if (r == 0)
                r = metrics_register_process(*out);
        if (r == 0)
                r = metrics_gauge_register(
                        *out, "homing_build_info", "The running homing's version (always 1).",
                        (const struct metrics_label[]){ { "version", versions }, { NULL, NULL } },
                        &info);
        if (r == 0)
                metrics_gauge_set(info, (size_t[]){ 0 }, 1);
        return r;
}

/*
 * Runs the API (if `serve`) and the given workers until a signal. A process
 * without the API serves /metrics on --metrics-listen, when set.
 */
/* The scrape token: the file's first line, without its end. NULL (logged) when unreadable or empty. */
static char *read_token(const char *path) {
        FILE *f = fopen(path, "r");
        char *line = NULL;
        size_t cap = 0;
        ssize_t n = f ? getline(&line, &cap, f) : -1;

        if (f)
                fclose(f);
        if (n > 0)
                line[strcspn(line, "\r\n")] = '\0';
        if (n <= 0 || !line[0]) {
                log_error("homing", "--metrics-token-file %s: %s", path,
                          n < 0 && errno ? strerror(errno) : "no token in it");
                free(line);
                return NULL;
        }
        return line;
}

static int run_parts(const struct config *cfg, bool serve, struct worker *workers, size_t n) {
        struct metrics *metrics = NULL;
        struct metrics_server *metrics_server = NULL;
        struct api *api = NULL;
        char errbuf[256];
        int r = 0;

        install_signals();
        if (metrics_setup(&metrics) < 0) {
                log_error("homing", "cannot set up metrics");
                metrics_free(metrics);
                return 1;
        }
        if (serve) {
                struct api_hooks hooks = { metrics, scheduler_what_if, NULL,
                                           scheduler_evacuation_plan };
                /* Ready means the consumer too, where this process has one. */
                for (size_t i = 0; i < n; i++)
                        if (workers[i].run == scheduler_run)
                                hooks.consumer_assigned = scheduler_consumer_assigned;
                if (api_start(cfg, &hooks, &api) < 0) {
                        metrics_free(metrics);
                        return 1;
                }
        } else if (cfg->metrics_listen[0]) {
                char *token = NULL;
                if (cfg->metrics_token_file[0] && !(token = read_token(cfg->metrics_token_file))) {
                        metrics_free(metrics);
                        return 1;
                }
                r = metrics_server_start(metrics, cfg->metrics_listen, token, &metrics_server,
                                         errbuf, sizeof(errbuf));
                free(token);
                if (r < 0) {
                        log_error("homing", "--metrics-listen %s: %s", cfg->metrics_listen, errbuf);
                        metrics_free(metrics);
                        return 1;
                }
                log_info("homing", "metrics on http://%s/metrics", cfg->metrics_listen);
        }
        for (size_t i = 0; i < n; i++) {
                workers[i].metrics = metrics;
                pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);
        }
        /* Polled, not pause(): the signal may land on any thread, and a
         * worker that fails to start sets the flag without one. */
        while (!atomic_load(&stop_requested))
                usleep(100 * 1000);
        log_info("homing", "stopping");
        for (size_t i = 0; i < n; i++) {
                pthread_join(workers[i].thread, NULL);
                if (workers[i].result < 0)
                        r = 1;
        }
        api_stop(api);
        metrics_server_free(metrics_server);
        metrics_free(metrics);
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
                struct worker workers[] = { { .cfg = &cfg, .run = scheduler_run },
                                            { .cfg = &cfg, .run = relay_run } };
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
                struct worker workers[] = { { .cfg = &cfg, .run = relay_run } };
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
                struct worker workers[] = { { .cfg = &cfg, .run = scheduler_run },
                                            { .cfg = &cfg, .run = relay_run } };
                r = run_parts(&cfg, true, workers, 2);
        }
        config_fini(&cfg);
        return r;
}

int cmd_agent(int argc, char **argv) {
        struct config cfg;
        int r = load(&cfg, argc, argv,
                     "homing agent --datacenter ID[,ID...] --store DIR [options]: the transfer "
                     "agent of one or more datacenters");
        if (r >= 0)
                return r;
        {
                struct worker workers[] = { { .cfg = &cfg, .run = agent_run } };
                r = run_parts(&cfg, false, workers, 1);
        }
        config_fini(&cfg);
        return r;
}
