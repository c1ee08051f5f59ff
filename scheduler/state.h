/*
 * state — what the scheduler remembers about the users whose reports it
 * reads: their devices' last fixes and their snapshots' policy state. Kept
 * in memory, loaded from PostgreSQL the first time a user's report arrives
 * after an assignment, dropped when the user's partition is revoked or the
 * database changed under it (a transfer ended, an operator acted).
 *
 * A user is one allocation: the header, its snapshots, the devices known
 * when it was loaded, and all their ids. A device first seen later goes
 * into a separate array. That keeps a tracked user near 190 bytes.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "scheduler/engine.h"

struct tracked_device {
        const char *id;
        struct engine_device fix;
};

struct tracked_snapshot {
        struct engine_snapshot policy;
        const char *id;
        int64_t pending_transfer; /* id of the transfer in flight, 0: none */
        uint8_t last_outcome;     /* enum engine_outcome of the last recorded decision */
        uint8_t last_reason;      /* enum engine_reason, ENGINE_OK: none yet */
};

struct tracked_user {
        const char *id;
        struct tracked_device *grown; /* the devices once more came; NULL: inline */
        int16_t partition;
        uint16_t n_devices;
        uint16_t n_snapshots;
        uint16_t n_inline_devices;
};

struct user_table;

int user_table_new(struct user_table **out);
struct user_table *user_table_free(struct user_table *t);

/* The user, or NULL. */
struct tracked_user *user_table_find(const struct user_table *t, const char *id);

/*
 * Adds a user (it must not be in the table yet) with these snapshots and
 * devices, their policy state and fixes zeroed for the caller to fill. Ids
 * are copied. Returns the user, or NULL when out of memory.
 */
struct tracked_user *user_table_add(struct user_table *t, const char *id, int16_t partition,
                                    const char *const *snapshot_ids, size_t n_snapshots,
                                    const char *const *device_ids, size_t n_devices);

struct tracked_snapshot *user_snapshots(struct tracked_user *u);
struct tracked_device *user_devices(struct tracked_user *u);

/* The index of the user's device with this id, adding it (with no fix) if
 * new; -ENOMEM. Adding may move the devices: look them up again after. */
int user_device(struct tracked_user *u, const char *device_id);

/* Forgets one user; false when it was not there. */
bool user_table_remove(struct user_table *t, const char *id);

/* Forgets every user of a partition (-1: every user). */
void user_table_drop_partition(struct user_table *t, int32_t partition);

size_t user_table_count(const struct user_table *t);
