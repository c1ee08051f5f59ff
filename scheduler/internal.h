/* What scheduler.c, whatif.c and load.c share; not for use outside scheduler/. */
#pragma once

#include "scheduler/engine.h"
#include "scheduler/state.h"

struct config;
struct store_result;
struct world;

void scheduler_policy_from_config(struct engine_policy *p, const struct config *cfg);

/*
 * Selects the snapshots of the users in $1 (a text array) with their
 * placement, transfer in flight and policy state, grouped by user; column 0
 * is the user id, column 1 the snapshot id, and scheduler_fill_snapshot()
 * reads the rest.
 */
extern const char scheduler_load_snapshots_sql[];

void scheduler_fill_snapshot(struct world *w, struct tracked_snapshot *snap,
                             const struct store_result *res, size_t row);
