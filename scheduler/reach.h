/*
 * How far each snapshot's user may move before the replica pass could
 * choose its replicas otherwise (reach.c): what the incremental pass
 * compares a new location with.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct replica_reach;

/* An empty table. Returns 0 or -ENOMEM. */
int replica_reach_new(struct replica_reach **out);

/* Frees it; NULL is fine. Returns NULL. */
struct replica_reach *replica_reach_free(struct replica_reach *m);

/* Forgets every snapshot. */
void replica_reach_clear(struct replica_reach *m);

/*
 * Remembers that the snapshot was planned with its user at (lat, lon) and
 * that its choice stands while the user stays less than radius_m from there
 * (a NaN point: any known location may change it). Returns 0 or -ENOMEM.
 */
int replica_reach_put(struct replica_reach *m, const char *snapshot, double lat, double lon,
                      double radius_m);

/* True when the user at (lat, lon) may change the snapshot's choice: not
 * remembered, planned without a location, or moved radius_m or more. */
bool replica_reach_moved(const struct replica_reach *m, const char *snapshot, double lat,
                         double lon);

size_t replica_reach_count(const struct replica_reach *m);

/* Calls fn for each snapshot a move may change (a finite radius, or planned
 * without a point): the ones whose users' reports are worth reading. */
void replica_reach_each_watched(const struct replica_reach *m,
                                void (*fn)(void *userdata, const char *snapshot), void *userdata);

/*
 * The radius within which a nearest-first choice stands: half the gap
 * between the farthest site chosen and the nearest left out (a move of d
 * changes every distance by at most d, so below half the gap no left-out
 * site overtakes a chosen one); infinite when none was chosen or none left
 * out, 0 when one left out was as near as a chosen one.
 */
double replica_reach_radius(const double *chosen_m, size_t n_chosen, const double *left_m,
                            size_t n_left);
