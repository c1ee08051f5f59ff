/*
 * The replica pass's memory of where each snapshot's user was when its
 * replicas were last chosen, and how far the user may move before the
 * choice could differ: open addressing with linear probing over the
 * snapshot ids (FNV-1a), grown at 80 % load; entries are overwritten, never
 * removed one by one (a full pass clears the table).
 */
#include "scheduler/reach.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"
#include "geo/geo.h"

struct reach_entry {
        char *snapshot; /* NULL: a free slot */
        double lat, lon, radius_m;
};

struct replica_reach {
        struct reach_entry *slots;
        size_t n_slots; /* a power of two */
        size_t count;
};

int replica_reach_new(struct replica_reach **out) {
        struct replica_reach *m = calloc(1, sizeof(*m));

        if (!m)
                return -ENOMEM;
        m->n_slots = 1024;
        m->slots = calloc(m->n_slots, sizeof(*m->slots));
        if (!m->slots) {
                free(m);
                return -ENOMEM;
        }
        *out = m;
        return 0;
}

void replica_reach_clear(struct replica_reach *m) {
        for (size_t i = 0; i < m->n_slots; i++) {
                free(m->slots[i].snapshot);
                m->slots[i].snapshot = NULL;
        }
        m->count = 0;
}

struct replica_reach *replica_reach_free(struct replica_reach *m) {
        if (!m)
                return NULL;
        replica_reach_clear(m);
        free(m->slots);
        free(m);
        return NULL;
}

static size_t slot_of(const struct reach_entry *slots, size_t n_slots, const char *id) {
        size_t mask = n_slots - 1, i = hash_fnv1a(id) & mask;

        while (slots[i].snapshot && strcmp(slots[i].snapshot, id) != 0)
                i = (i + 1) & mask;
        return i;
}

static int grow(struct replica_reach *m) {
        size_t n = m->n_slots * 2;
        struct reach_entry *bigger = calloc(n, sizeof(*bigger));

        if (!bigger)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_slots; i++)
                if (m->slots[i].snapshot)
                        bigger[slot_of(bigger, n, m->slots[i].snapshot)] = m->slots[i];
        free(m->slots);
        m->slots = bigger;
        m->n_slots = n;
        return 0;
}

int replica_reach_put(struct replica_reach *m, const char *snapshot, double lat, double lon,
                      double radius_m) {
        struct reach_entry *e;

        if ((m->count + 1) * 5 > m->n_slots * 4 && grow(m) < 0)
                return -ENOMEM;
        e = &m->slots[slot_of(m->slots, m->n_slots, snapshot)];
        if (!e->snapshot) {
                e->snapshot = strdup(snapshot);
                if (!e->snapshot)
                        return -ENOMEM;
                m->count++;
        }
        e->lat = lat;
        e->lon = lon;
        e->radius_m = radius_m;
        return 0;
}

bool replica_reach_moved(const struct replica_reach *m, const char *snapshot, double lat,
                         double lon) {
        const struct reach_entry *e = &m->slots[slot_of(m->slots, m->n_slots, snapshot)];
        double d;

        if (!e->snapshot || !geo_point_valid(e->lat, e->lon))
                return true;
        if (isinf(e->radius_m))
                return false;
        d = geo_distance_m(e->lat, e->lon, lat, lon);
        return !(d < e->radius_m); /* NaN (no valid new point): moved */
}

size_t replica_reach_count(const struct replica_reach *m) {
        return m->count;
}

void replica_reach_each_watched(const struct replica_reach *m,
                                void (*fn)(void *userdata, const char *snapshot), void *userdata) {
        for (size_t i = 0; i < m->n_slots; i++) {
                const struct reach_entry *e = &m->slots[i];
                if (e->snapshot && (!geo_point_valid(e->lat, e->lon) || !isinf(e->radius_m)))
                        fn(userdata, e->snapshot);
        }
}

double replica_reach_radius(const double *chosen_m, size_t n_chosen, const double *left_m,
                            size_t n_left) {
        double far = 0, near = INFINITY;

        if (n_chosen == 0)
                return INFINITY; /* nothing chosen, nothing to overtake */
        for (size_t i = 0; i < n_chosen; i++)
                far = fmax(far, chosen_m[i]);
        for (size_t i = 0; i < n_left; i++)
                near = fmin(near, left_m[i]);
        if (isinf(near))
                return INFINITY;
        return near > far ? (near - far) / 2 : 0;
}
