/*
 * scheduler — reads location reports from Kafka and turns them into
 * placement decisions and transfers in PostgreSQL, each batch of reports,
 * its effects and its consumed offsets in one transaction. The relay
 * publishes what those transactions put in the outbox.
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct config;
struct engine_policy;
struct metrics;

/* The policy the settings give (flags, variables, the file): the one the
 * scheduler decides with, for the what-if and `homing replay` too. */
void scheduler_policy_from_config(struct engine_policy *p, const struct config *cfg);

/*
 * Consumes until *stop turns true, counting into `metrics` (borrowed; it
 * must outlive the call). Returns 0, or <0 when it cannot start.
 */
int scheduler_run(const struct config *cfg, struct metrics *metrics, atomic_bool *stop);

/*
 * Publishes outbox rows to Kafka in order and marks them sent, until *stop.
 * Several relays may run; one holds the lock and works, the others wait.
 * Also keeps the database-wide gauges (outbox backlog, transfers by state).
 */
int relay_run(const struct config *cfg, struct metrics *metrics, atomic_bool *stop);

struct store;

/* True once this process's scheduler has been given its partitions (its
 * first assignment; it may be empty when the group has more members than
 * partitions), false before and after it leaves the group. */
bool scheduler_consumer_assigned(void);

/*
 * What homing would decide, and why, if `user_id` reported from (lat, lon)
 * at ts_ms — changing nothing. For each of the user's snapshots: the
 * decision now (with its dwell so far) and the decision once the user had
 * stayed there long enough. Uses `db` (borrowed) for the catalog and the
 * user's state. Returns 0 and a malloc'd JSON document in *json_out,
 * -ENOENT when the user has no snapshot, or another negative errno.
 */
int scheduler_what_if(const struct config *cfg, struct store *db, const char *user_id, double lat,
                      double lon, int64_t ts_ms, char **json_out);

/*
 * Fills the plan of evacuation `evacuation_id` (a row of `evacuations`
 * without items) in the caller's transaction on `db` (borrowed): for every
 * snapshot active at its datacenter, its target or why it has none, and the
 * bytes to send (scheduler/evacuate.c). Returns 0, -ENOENT when the
 * evacuation or its datacenter is unknown, or another negative errno.
 */
int scheduler_evacuation_plan(const struct config *cfg, struct store *db,
                              const char *evacuation_id);
