/*
 * api — homing's HTTP server: location ingest, the operator's REST API,
 * health, metrics and the dashboard.
 */
#pragma once

#include <stdint.h>

struct config;
struct api;

/* Starts serving on cfg->listen. `cfg` is borrowed for the server's life. */
int api_start(const struct config *cfg, struct api **out);

/* The port actually bound (useful with port 0). */
uint16_t api_port(const struct api *a);

/* Stops accepting, lets reports in flight finish, and frees. NULL is fine. */
struct api *api_stop(struct api *a);
