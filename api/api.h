/*
 * api — homing's HTTP server: location ingest, the operator's REST API,
 * health, metrics and the dashboard.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct config;
struct api;
struct metrics;
struct store;

/* What the API uses that other parts of homing provide; cmd/ wires them. */
struct api_hooks {
        /* The process's metrics registry (borrowed); NULL: the API keeps its own. */
        struct metrics *metrics;
        /* The scheduler's what-if (scheduler_what_if); NULL: that route answers 501. */
        int (*what_if)(const struct config *cfg, struct store *db, const char *user_id, double lat,
                       double lon, int64_t ts_ms, char **json_out);
        /* In a process that also consumes: whether its consumer has joined the
         * group and been given its partitions (scheduler_consumer_assigned).
         * NULL: there is no consumer here, /readyz does not ask. */
        bool (*consumer_assigned)(void);
        /* The scheduler's evacuation planner (scheduler_evacuation_plan); NULL:
         * creating an evacuation answers 501. */
        int (*plan_evacuation)(const struct config *cfg, struct store *db,
                               const char *evacuation_id);
};

/*
 * Starts serving on cfg->listen (HTTPS when cfg->tls_cert and tls_key are
 * set). `cfg` and what `hooks` points to are borrowed for the server's life;
 * `hooks` may be NULL. Returns 0 or <0 (logged).
 */
int api_start(const struct config *cfg, const struct api_hooks *hooks, struct api **out);

/* The port actually bound (useful with port 0). */
uint16_t api_port(const struct api *a);

/* Stops accepting, lets reports in flight finish, and frees. NULL is fine. */
struct api *api_stop(struct api *a);

/* Prints the route table: method, path template, who may call, summary. */
void api_routes_print(FILE *f);
