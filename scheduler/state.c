/*
 * The user table: open addressing with linear probing over pointers to
 * users, keyed by the user id's FNV-1a hash, grown at 80% load. Deletion
 * uses backward shifting, so no tombstones accumulate over a long run.
 */
#include "scheduler/state.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"

struct user_table {
        struct tracked_user **slots;
        size_t n_slots; /* a power of two */
        size_t count;
};

int user_table_new(struct user_table **out) {
        struct user_table *t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->n_slots = 1024;
        t->slots = calloc(t->n_slots, sizeof(*t->slots));
        if (!t->slots) {
                free(t);
                return -ENOMEM;
        }
        *out = t;
        return 0;
}

static void user_free(struct tracked_user *u) {
        if (u->grown) {
                for (size_t i = u->n_inline_devices; i < u->n_devices; i++)
                        free((char *)u->grown[i].id);
                free(u->grown);
        }
        free(u);
}

struct user_table *user_table_free(struct user_table *t) {
        if (!t)
                return NULL;
        user_table_drop_partition(t, -1);
        free(t->slots);
        free(t);
        return NULL;
}

static size_t slot_of(const struct user_table *t, const char *id) {
        size_t mask = t->n_slots - 1, i = hash_fnv1a(id) & mask;
        while (t->slots[i] && strcmp(t->slots[i]->id, id) != 0)
                i = (i + 1) & mask;
        return i;
}

struct tracked_user *user_table_find(const struct user_table *t, const char *id) {
        return t->slots[slot_of(t, id)];
}

static int grow(struct user_table *t) {
        struct user_table bigger = { .n_slots = t->n_slots * 2 };
        bigger.slots = calloc(bigger.n_slots, sizeof(*bigger.slots));
        if (!bigger.slots)
                return -ENOMEM;
        for (size_t i = 0; i < t->n_slots; i++)
                if (t->slots[i])
                        bigger.slots[slot_of(&bigger, t->slots[i]->id)] = t->slots[i];
        free(t->slots);
        t->slots = bigger.slots;
        t->n_slots = bigger.n_slots;
        return 0;
}

struct tracked_snapshot *user_snapshots(struct tracked_user *u) {
        return (struct tracked_snapshot *)(u + 1);
}

struct tracked_device *user_devices(struct tracked_user *u) {
        return u->grown ? u->grown : (struct tracked_device *)(user_snapshots(u) + u->n_snapshots);
}

struct tracked_user *user_table_add(struct user_table *t, const char *id, int16_t partition,
                                    const char *const *snapshot_ids, size_t n_snapshots,
                                    const char *const *device_ids, size_t n_devices) {
        size_t names = strlen(id) + 1;
        struct tracked_snapshot *snaps;
        struct tracked_device *devs;
        struct tracked_user *u;
        char *p;

        if (n_snapshots > UINT16_MAX || n_devices > UINT16_MAX)
                return NULL;
        if ((t->count + 1) * 10 > t->n_slots * 8 && grow(t) < 0)
                return NULL;
        for (size_t i = 0; i < n_snapshots; i++)
                names += strlen(snapshot_ids[i]) + 1;
        for (size_t i = 0; i < n_devices; i++)
                names += strlen(device_ids[i]) + 1;
        u = calloc(1,
                   sizeof(*u) + n_snapshots * sizeof(*snaps) + n_devices * sizeof(*devs) + names);
        if (!u)
                return NULL;
        u->partition = partition;
        u->n_snapshots = (uint16_t)n_snapshots;
        u->n_devices = u->n_inline_devices = (uint16_t)n_devices;
        snaps = user_snapshots(u);
        devs = user_devices(u);
        p = (char *)(devs + n_devices);
        u->id = strcpy(p, id);
        p += strlen(p) + 1;
        for (size_t i = 0; i < n_snapshots; i++) {
                snaps[i].id = strcpy(p, snapshot_ids[i]);
                p += strlen(p) + 1;
        }
        for (size_t i = 0; i < n_devices; i++) {
                devs[i].id = strcpy(p, device_ids[i]);
                p += strlen(p) + 1;
        }
        t->slots[slot_of(t, id)] = u;
        t->count++;
        return u;
}

int user_device(struct tracked_user *u, const char *device_id) {
        struct tracked_device *devs = user_devices(u), *grown;
        char *copy;

        for (size_t i = 0; i < u->n_devices; i++)
                if (!strcmp(devs[i].id, device_id))
                        return (int)i;
        if (u->n_devices == UINT16_MAX)
                return -ENOMEM;
        copy = strdup(device_id);
        grown = copy ? realloc(u->grown, (u->n_devices + 1u) * sizeof(*grown)) : NULL;
        if (!grown) {
                free(copy);
                return -ENOMEM;
        }
        if (!u->grown)
                memcpy(grown, devs, u->n_devices * sizeof(*grown));
        u->grown = grown;
        grown[u->n_devices] = (struct tracked_device){ .id = copy };
        return u->n_devices++;
}

/* Empties slot i and moves later members of its probe run back into the gap. */
static void remove_at(struct user_table *t, size_t i) {
        size_t mask = t->n_slots - 1, j = i;

        user_free(t->slots[i]);
        t->slots[i] = NULL;
        t->count--;
        for (;;) {
                size_t home;
                j = (j + 1) & mask;
                if (!t->slots[j])
                        return;
                home = hash_fnv1a(t->slots[j]->id) & mask;
                /* Move it back if its home lies cyclically at or before the gap. */
                if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
                        t->slots[i] = t->slots[j];
                        t->slots[j] = NULL;
                        i = j;
                }
        }
}

bool user_table_remove(struct user_table *t, const char *id) {
        size_t i = slot_of(t, id);
        if (!t->slots[i])
                return false;
        remove_at(t, i);
        return true;
}

void user_table_drop_partition(struct user_table *t, int32_t partition) {
        size_t i = 0;
        while (i < t->n_slots) {
                /* remove_at may shift a later user into slot i: look at it again. */
                if (t->slots[i] && (partition < 0 || t->slots[i]->partition == partition))
                        remove_at(t, i);
                else
                        i++;
        }
}

size_t user_table_count(const struct user_table *t) {
        return t->count;
}
