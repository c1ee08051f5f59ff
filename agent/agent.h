/*
 * agent — `homing agent`: the transfer agents of one or more datacenters in
 * one process. Each datacenter has its store, its agent token, its workers
 * (claiming its transfers in priority order), its bandwidth bucket; one HTTP
 * server answers the peers that pull from any of them.
 */
#pragma once

#include <stdatomic.h>

struct config;
struct metrics;

/* Runs until *stop; 0, or <0 when it could not start (logged). */
int agent_run(const struct config *cfg, struct metrics *metrics, atomic_bool *stop);
