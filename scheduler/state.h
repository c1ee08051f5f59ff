/*
 * state — what the scheduler remembers about the users whose reports it
 * reads: their devices' last fixes and their snapshots' policy state. Kept
 * in memory, loaded from PostgreSQL the first time a user's report arrives
 * after an assignment, dropped when the user's partition is revoked or the
 * database changed under it (a transfer ended, an operator acted).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "scheduler/engine.h"

struct tracked_device {
        char *id;
        struct engine_device fix;
        int32_t batch_slot;          /* its row in the batch being built, or -1 */
};

struct tracked_snapshot {
        char *id;
        int64_t pending_transfer;    /* id of the transfer in flight, 0: none */
        struct engine_snapshot policy;
        uint8_t last_outcome;        /* enum engine_outcome of the last recorded decision */
        uint8_t last_reason;         /* enum engine_reason, ENGINE_OK: none yet */
        bool dirty;                  /* in the batch's list of state to persist */
};

struct tracked_user {
        char *id;
        int32_t partition;
        uint16_t n_devices;
        uint16_t n_snapshots;
        struct tracked_device *devices;
        struct tracked_snapshot *snapshots;
};

struct user_table;

int user_table_new(struct user_table **out);
struct user_table *user_table_free(struct user_table *t);

/* The user, or NULL. */
struct tracked_user *user_table_find(const struct user_table *t, const char *id);

/*
 * Adds a user with n_snapshots zeroed snapshots (the caller fills them) and
 * no device. The user must not be in the table. Returns it, or NULL when
 * out of memory.
 */
struct tracked_user *user_table_add(struct user_table *t, const char *id, int32_t partition,
                                    size_t n_snapshots);

/* Returns the user's device with this id, adding it (with no fix) if new; NULL on ENOMEM. */
struct tracked_device *user_device(struct tracked_user *u, const char *device_id);

/* Forgets one user; false when it was not there. */
bool user_table_remove(struct user_table *t, const char *id);

/* Forgets every user of a partition (-1: every user). */
void user_table_drop_partition(struct user_table *t, int32_t partition);

size_t user_table_count(const struct user_table *t);
