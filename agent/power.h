/*
 * power — the agent's reconcile loop for VMs: every --agent-reconcile-ms,
 * each datacenter it serves asks the API which VMs should run there, powers
 * off (and undefines) what runs and should not, then powers on what should,
 * reporting each result under the snapshot's epoch. agent/README.md,
 * "Powering on", is the contract.
 */
#pragma once

#include <stdatomic.h>
#include <stddef.h>

struct config;
struct metrics;
struct power;

/* A datacenter the loop serves (all borrowed; they outlive the loop). */
struct power_site_config {
        const char *datacenter;
        const char *store;
        const char *token;
};

/*
 * Starts the loop's thread, unless --driver is none (then *out is NULL).
 * Returns 0, or <0 when a driver could not start (logged).
 */
int power_start(const struct config *cfg, struct metrics *m, const struct power_site_config *sites,
                size_t n_sites, atomic_bool *stop, struct power **out)
        __attribute__((warn_unused_result));
/* Waits for the thread (after *stop is set) and frees everything. */
struct power *power_stop(struct power *p);
