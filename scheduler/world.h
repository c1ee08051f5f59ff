/*
 * world — the catalog a decision is made in, as the engine wants it: the
 * datacenters in a geo index (sites keep their integer index while they
 * exist), the templates with their sizes and replica bitmaps, and the sets of
 * zones snapshots are restricted to. Reloaded from PostgreSQL periodically.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "scheduler/engine.h"

struct store;
struct world;

int world_new(struct world **out);
struct world *world_free(struct world *w);

/* Reloads datacenters, zones and templates. Keeps the old view on failure. */
int world_load(struct world *w, struct store *db);

/* The context for engine_decide; valid until the next world_load. */
const struct engine_context *world_context(const struct world *w);

/* A site's index by datacenter id (ENGINE_NO_SITE when unknown), and back. */
uint32_t world_site(const struct world *w, const char *datacenter_id);
const char *world_site_id(const struct world *w, uint32_t site);

/* A template's index by id (UINT16_MAX when unknown). */
uint16_t world_template(const struct world *w, const char *template_id);

/*
 * The index of a set of zones given as a PostgreSQL text array ("{eu,ch}"),
 * interned: equal sets share an index; "{}" is 0. UINT16_MAX when it cannot
 * be kept (out of memory, too many sets): the engine then lets the snapshot
 * go nowhere rather than anywhere.
 */
uint16_t world_zone_set(struct world *w, const char *pg_array);
