/*
 * The catalog: the datacenters and zones as they change at run time, and the
 * index readers query.
 *
 * A writer edits a private copy (sites in slots, zones sorted by id) and
 * publishes it as a new immutable geo_index. Readers take the current index
 * with a reference and query it for as long as they like: they always see one
 * whole version, and they never wait for a writer.
 *
 * The only subtle moment is a reader that has loaded the current pointer but
 * not yet taken its reference while a writer replaces and releases that very
 * index. Readers announce that window on one of two counters (chosen by an
 * epoch bit); after swapping the pointer the writer flips the epoch and waits
 * until the old epoch's counter drains before dropping the catalog's
 * reference. Readers that arrive later use the other counter, so the writer
 * waits a few instructions at most and readers not at all. Every atomic here
 * is sequentially consistent, which the argument needs: a reader that
 * announced itself too late for the writer to see it loads the pointer after
 * the swap, and so gets the new index.
 *
 * Zone memberships are computed only for sites that are new or moved, or for
 * all of them when a zone changed, so a publish costs about a tree build.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "geo/geo-internal.h"
#include "geo/geo.h"

struct slot {
        char *id; /* NULL while the slot is free */
        geo_site site;
        uint32_t *zones; /* indexes into the catalog's zones, sorted */
        uint32_t n_zones;
        bool dirty; /* memberships to compute again */
};

#define MAP_EMPTY 0u
#define MAP_GONE UINT32_MAX

struct geo_catalog {
        _Atomic(geo_index *) current;
        atomic_uint epoch;
        atomic_ulong entering[2];

        pthread_mutex_t lock; /* serializes writers; readers never take it */
        struct slot *slots;
        size_t n_slots, cap_slots;
        uint32_t *free_slots;
        size_t n_free;
        uint32_t *map; /* open addressing on id: slot + 1, MAP_EMPTY, MAP_GONE */
        size_t map_cap, map_used;
        geo_zone **zones; /* sorted by id, one reference each */
        size_t n_zones, cap_zones;
        bool zones_changed;
        uint64_t version;
};

/* ---- the id map ---------------------------------------------------------- */

/* Where id is, or where it would go; *found says which. */
static size_t map_probe(const geo_catalog *c, const char *id, bool *found) {
        size_t mask = c->map_cap - 1, i = geo_hash_id(id) & mask, gone = SIZE_MAX;

        for (;; i = (i + 1) & mask) {
                uint32_t e = c->map[i];
                if (e == MAP_EMPTY) {
                        *found = false;
                        return gone != SIZE_MAX ? gone : i;
                }
                if (e == MAP_GONE) {
                        if (gone == SIZE_MAX)
                                gone = i;
                } else if (!strcmp(c->slots[e - 1].id, id)) {
                        *found = true;
                        return i;
                }
        }
}

/* Keeps at most half the map in use (live or gone). */
static int map_grow(geo_catalog *c) {
        size_t cap = c->map_cap, live = c->n_slots - c->n_free;
        uint32_t *old = c->map;

        if (2 * (c->map_used + 1) <= c->map_cap)
                return 0;
        while (4 * (live + 1) > cap)
                cap *= 2;
        c->map = calloc(cap, sizeof(*c->map));
        if (!c->map) {
                c->map = old;
                return -ENOMEM;
        }
        c->map_cap = cap;
        c->map_used = 0;
        for (size_t s = 0; s < c->n_slots; s++) {
                bool found;
                if (!c->slots[s].id)
                        continue;
                c->map[map_probe(c, c->slots[s].id, &found)] = (uint32_t)s + 1;
                c->map_used++;
        }
        free(old);
        return 0;
}

/* ---- life ----------------------------------------------------------------- */

int geo_catalog_new(geo_catalog **out) {
        geo_catalog *c;
        geo_index *ix;
        int r;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->map_cap = 16;
        c->map = calloc(c->map_cap, sizeof(*c->map));
        if (!c->map) {
                free(c);
                return -ENOMEM;
        }
        r = geo_index_build(&ix, NULL, 0, NULL, 0, NULL, NULL, 0);
        if (r < 0) {
                free(c->map);
                free(c);
                return r;
        }
        atomic_init(&c->current, ix);
        atomic_init(&c->epoch, 0);
        atomic_init(&c->entering[0], 0);
        atomic_init(&c->entering[1], 0);
        pthread_mutex_init(&c->lock, NULL);
        *out = c;
        return 0;
}

geo_catalog *geo_catalog_free(geo_catalog *c) {
        if (!c)
                return NULL;
        geo_index_unref(atomic_load(&c->current));
        for (size_t s = 0; s < c->n_slots; s++) {
                free(c->slots[s].id);
                free(c->slots[s].zones);
        }
        for (size_t z = 0; z < c->n_zones; z++)
                geo_zone_unref(c->zones[z]);
        free(c->zones);
        free(c->slots);
        free(c->free_slots);
        free(c->map);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
}

/* ---- editing -------------------------------------------------------------- */

static int put_site_locked(geo_catalog *c, const geo_site *site) {
        struct slot *s;
        bool found;
        size_t i;
        int r;

        r = map_grow(c);
        if (r < 0)
                return r;
        i = map_probe(c, site->id, &found);
        if (found) {
                s = &c->slots[c->map[i] - 1];
                if (s->site.lat != site->lat || s->site.lon != site->lon)
                        s->dirty = true;
                s->site = *site;
                s->site.id = s->id;
                return 0;
        }

        char *id = strdup(site->id);
        uint32_t n;
        if (!id)
                return -ENOMEM;
        if (c->n_free) {
                n = c->free_slots[--c->n_free];
        } else {
                if (c->n_slots == c->cap_slots) {
                        size_t cap = c->cap_slots ? 2 * c->cap_slots : 16;
                        struct slot *slots = realloc(c->slots, cap * sizeof(*slots));
                        uint32_t *free_slots;
                        if (!slots) {
                                free(id);
                                return -ENOMEM;
                        }
                        c->slots = slots;
                        free_slots = realloc(c->free_slots, cap * sizeof(*free_slots));
                        if (!free_slots) {
                                free(id);
                                return -ENOMEM;
                        }
                        c->free_slots = free_slots;
                        c->cap_slots = cap;
                }
                if (c->n_slots >= UINT32_MAX - 1) {
                        free(id);
                        return -ENOMEM;
                }
                n = (uint32_t)c->n_slots++;
        }
        s = &c->slots[n];
        *s = (struct slot){ .id = id, .site = *site, .dirty = true };
        s->site.id = id;
        if (c->map[i] == MAP_EMPTY)
                c->map_used++;
        c->map[i] = n + 1;
        return 0;
}

int geo_catalog_put_site(geo_catalog *c, const geo_site *site) {
        int r = geo_site_check(site);

        if (r < 0)
                return r;
        pthread_mutex_lock(&c->lock);
        r = put_site_locked(c, site);
        pthread_mutex_unlock(&c->lock);
        return r;
}

int geo_catalog_remove_site(geo_catalog *c, const char *id) {
        struct slot *s;
        bool found;
        size_t i;
        int r = 0;

        if (!id)
                return -ENOENT;
        pthread_mutex_lock(&c->lock);
        i = map_probe(c, id, &found);
        if (!found) {
                r = -ENOENT;
                goto out;
        }
        s = &c->slots[c->map[i] - 1];
        c->free_slots[c->n_free++] = c->map[i] - 1;
        c->map[i] = MAP_GONE;
        free(s->id);
        free(s->zones);
        *s = (struct slot){ 0 };
out:
        pthread_mutex_unlock(&c->lock);
        return r;
}

/* Where a zone with this id is or would go in the sorted array. */
static size_t zone_pos(const geo_catalog *c, const char *id, bool *found) {
        size_t lo = 0, hi = c->n_zones;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int cmp = strcmp(geo_zone_id(c->zones[mid]), id);
                if (!cmp) {
                        *found = true;
                        return mid;
                }
                if (cmp < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        *found = false;
        return lo;
}

int geo_catalog_put_zone(geo_catalog *c, geo_zone *zone) {
        bool found;
        size_t i;
        int r = 0;

        if (!zone)
                return -EINVAL;
        pthread_mutex_lock(&c->lock);
        i = zone_pos(c, geo_zone_id(zone), &found);
        if (found) {
                geo_zone_unref(c->zones[i]);
                c->zones[i] = geo_zone_ref(zone);
        } else {
                if (c->n_zones == c->cap_zones) {
                        size_t cap = c->cap_zones ? 2 * c->cap_zones : 8;
                        geo_zone **zones = realloc(c->zones, cap * sizeof(*zones));
                        if (!zones) {
                                r = -ENOMEM;
                                goto out;
                        }
                        c->zones = zones;
                        c->cap_zones = cap;
                }
                memmove(c->zones + i + 1, c->zones + i, (c->n_zones - i) * sizeof(*c->zones));
                c->zones[i] = geo_zone_ref(zone);
                c->n_zones++;
        }
        c->zones_changed = true;
out:
        pthread_mutex_unlock(&c->lock);
        return r;
}

int geo_catalog_remove_zone(geo_catalog *c, const char *id) {
        bool found;
        size_t i;
        int r = 0;

        if (!id)
                return -ENOENT;
        pthread_mutex_lock(&c->lock);
        i = zone_pos(c, id, &found);
        if (!found) {
                r = -ENOENT;
                goto out;
        }
        geo_zone_unref(c->zones[i]);
        memmove(c->zones + i, c->zones + i + 1, (c->n_zones - i - 1) * sizeof(*c->zones));
        c->n_zones--;
        c->zones_changed = true;
out:
        pthread_mutex_unlock(&c->lock);
        return r;
}

/* ---- publishing and reading ---------------------------------------------- */

static int memberships(geo_catalog *c, struct slot *s) {
        uint32_t *zones = NULL, n = 0;

        for (size_t z = 0; z < c->n_zones; z++) {
                int r = geo_zone_covers(c->zones[z], s->site.lat, s->site.lon);
                if (r < 0) {
                        free(zones);
                        return r;
                }
                if (!r)
                        continue;
                uint32_t *more = realloc(zones, (n + 1) * sizeof(*more));
                if (!more) {
                        free(zones);
                        return -ENOMEM;
                }
                zones = more;
                zones[n++] = (uint32_t)z;
        }
        free(s->zones);
        s->zones = zones;
        s->n_zones = n;
        s->dirty = false;
        return 0;
}

int geo_catalog_publish(geo_catalog *c) {
        geo_site *sites = NULL;
        uint32_t **member = NULL, *n_member = NULL;
        geo_index *ix, *old;
        unsigned e;
        int r = 0;

        pthread_mutex_lock(&c->lock);
        for (size_t s = 0; s < c->n_slots; s++) {
                struct slot *sl = &c->slots[s];
                if (!sl->id || !(sl->dirty || c->zones_changed))
                        continue;
                r = memberships(c, sl);
                if (r < 0)
                        goto out;
        }
        c->zones_changed = false;

        sites = calloc(c->n_slots ? c->n_slots : 1, sizeof(*sites));
        member = calloc(c->n_slots ? c->n_slots : 1, sizeof(*member));
        n_member = calloc(c->n_slots ? c->n_slots : 1, sizeof(*n_member));
        if (!sites || !member || !n_member) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t s = 0; s < c->n_slots; s++) {
                if (!c->slots[s].id)
                        continue;
                sites[s] = c->slots[s].site;
                member[s] = c->slots[s].zones;
                n_member[s] = c->slots[s].n_zones;
        }
        r = geo_index_build(&ix, sites, c->n_slots, c->zones, c->n_zones, member, n_member,
                            c->version + 1);
        if (r < 0)
                goto out;
        c->version++;

        old = atomic_exchange(&c->current, ix);
        e = atomic_fetch_xor(&c->epoch, 1) & 1;
        while (atomic_load(&c->entering[e]))
                sched_yield();
        geo_index_unref(old);
out:
        pthread_mutex_unlock(&c->lock);
        free(sites);
        free(member);
        free(n_member);
        return r;
}

geo_index *geo_catalog_acquire(geo_catalog *c) {
        unsigned e = atomic_load(&c->epoch) & 1;
        geo_index *ix;

        atomic_fetch_add(&c->entering[e], 1);
        ix = geo_index_ref(atomic_load(&c->current));
        atomic_fetch_sub(&c->entering[e], 1);
        return ix;
}
