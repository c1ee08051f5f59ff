/*
 * scheduler — reads location reports from Kafka and turns them into
 * placement decisions and transfers in PostgreSQL, each batch of reports,
 * its effects and its consumed offsets in one transaction. The relay
 * publishes what those transactions put in the outbox.
 */
#pragma once

#include <stdatomic.h>

struct config;

/* Consumes until *stop turns true. Returns 0, or <0 when it cannot start. */
int scheduler_run(const struct config *cfg, atomic_bool *stop);

/*
 * Publishes outbox rows to Kafka in order and marks them sent, until *stop.
 * Several relays may run; one holds the lock and works, the others wait.
 */
int relay_run(const struct config *cfg, atomic_bool *stop);
