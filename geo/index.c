/*
 * The nearest-site index: one immutable version of the datacenter catalog.
 *
 * Each site is kept as its earth-centred Cartesian position (ECEF, metres) in
 * a k-d tree. Two rigorous lower bounds tie the straight-line distance c
 * between two points of the ellipsoid (the chord) to the geodesic s: s >= c,
 * tight up close (short by s^3 / 24R^2: 6 cm at 40 km), and s >= 2b asin(c/2a),
 * within 0.34% far away. reach2() combines them.
 *
 * A k-nearest query runs in three steps:
 *  1. the k eligible sites nearest by chord (an ordinary k-d tree search);
 *  2. their geodesic distances (geod_inverse, through geo_distance_m); the
 *     k-th of them, tau, is an upper bound on the k-th answer;
 *  3. every other eligible site whose chord is within reach of tau (plus a
 *     slack for rounding) could still beat one of them: it gets its geodesic
 *     too, and tau shrinks as better sites come in.
 * A site out of reach has a geodesic longer than tau, so it cannot be among
 * the k nearest: the answer is the one brute force gives, ties included (they
 * are broken by id on the very same geod_inverse values). In practice step 3
 * finds nobody new, and a query costs one tree descent, one short range walk
 * and k geod_inverse calls. geo/README.md has the proof.
 *
 * Every internal node summarizes its subtree (statuses, most free space,
 * zones present), so the filter prunes whole subtrees: "nearest eligible"
 * walks about as much of the tree as "nearest".
 *
 * The index never changes once built, so any number of threads may query it;
 * all query state is on the caller's stack.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "geo/geo-internal.h"
#include "geo/geo.h"

/* Sites per leaf of the tree: small enough to prune well, large enough that
 * the walk is not all bookkeeping. */
#define LEAF 8

/* Step 3 reaches for geodesics up to tau * (1 + REL) + ABS, and adds ABS to
 * the chord it derives. The chord and geod_inverse are each within a few
 * nanometres of the truth; a millimetre is ample room. */
#define SLACK_REL 1e-9
#define SLACK_ABS_M 1e-3

struct point {
        double c[3];         /* ECEF, metres */
        uint64_t free_bytes; /* copied here so the cheap filter stays in cache */
        uint32_t slot;
        uint8_t status;
};

struct site {
        const char *id; /* into names; NULL for an empty slot */
        double lat, lon;
        uint64_t free_bytes;
        uint32_t zone_off, zone_n; /* into zone_members */
        uint8_t status;
};

/* An internal node: its split, and what its subtree holds, so that a
 * subtree with no eligible site is skipped whole. */
struct node {
        double split;
        uint64_t max_free; /* the most free bytes of any site below */
        uint32_t axis;
        uint8_t statuses; /* bit set of the statuses below */
};

struct geo_index {
        atomic_ulong refs;
        uint64_t version;
        size_t n_slots, n_sites;
        struct site *sites;
        char *names;
        size_t names_size;
        struct point *points; /* the n_sites present sites, in tree order */
        struct node *nodes;   /* internal nodes, heap order: children 2i+1, 2i+2 */
        size_t n_nodes;
        uint64_t *node_zones; /* per node, zone_words bits: zones present below */
        size_t zone_words;
        uint32_t *table; /* open addressing on id: slot + 1, 0 for empty */
        size_t table_mask;
        geo_zone **zones; /* sorted by id, one reference each */
        size_t n_zones;
        uint32_t *zone_members;
        size_t n_zone_members;
};

/* ---- building ------------------------------------------------------------ */

static int table_insert(geo_index *ix, uint32_t slot) {
        size_t i = geo_hash_id(ix->sites[slot].id) & ix->table_mask;

        for (; ix->table[i]; i = (i + 1) & ix->table_mask)
                if (!strcmp(ix->sites[ix->table[i] - 1].id, ix->sites[slot].id))
                        return -EEXIST;
        ix->table[i] = slot + 1;
        return 0;
}

/* Moves the k-th smallest (by c[axis]) of p[0..n) to p[k], smaller ones
 * before it, larger after: Hoare partitioning copes with many equal keys. */
static void select_kth(struct point *p, size_t n, size_t k, unsigned axis) {
        size_t lo = 0, hi = n - 1;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                double a = p[lo].c[axis], b = p[mid].c[axis], c = p[hi].c[axis];
                double pivot =
                        a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
                size_t i = lo, j = hi;

                for (;;) {
                        while (p[i].c[axis] < pivot)
                                i++;
                        while (p[j].c[axis] > pivot)
                                j--;
                        if (i >= j)
                                break;
                        struct point t = p[i];
                        p[i] = p[j];
                        p[j] = t;
                        i++;
                        j--;
                }
                /* Now p[lo..j] <= pivot <= p[j+1..hi]. */
                if (k <= j)
                        hi = j;
                else
                        lo = j + 1;
        }
}

static size_t tree_levels(size_t n) {
        size_t d = 0;
        while (n > LEAF) {
                n -= n / 2; /* the larger half */
                d++;
        }
        return d;
}

static void tree_build(geo_index *ix, size_t node, size_t lo, size_t hi) {
        double min[3] = { INFINITY, INFINITY, INFINITY };
        double max[3] = { -INFINITY, -INFINITY, -INFINITY };
        unsigned axis = 0;
        size_t mid;

        if (hi - lo <= LEAF)
                return;
        for (size_t i = lo; i < hi; i++)
                for (unsigned a = 0; a < 3; a++) {
                        /* The analyzer loses calloc's zeroed n_sites and builds a tree over
                         * points never written: NOLINTNEXTLINE(clang-analyzer-core.CallAndMessage) */
                        min[a] = fmin(min[a], ix->points[i].c[a]);
                        max[a] = fmax(max[a], ix->points[i].c[a]);
                }
        for (unsigned a = 1; a < 3; a++)
                if (max[a] - min[a] > max[axis] - min[axis])
                        axis = a;
        mid = lo + (hi - lo) / 2;
        select_kth(ix->points + lo, hi - lo, mid - lo, axis);
        ix->nodes[node].split = ix->points[mid].c[axis];
        ix->nodes[node].axis = axis;
        tree_build(ix, 2 * node + 1, lo, mid);
        tree_build(ix, 2 * node + 2, mid, hi);
}

/* Fills the summaries of the nodes over points[lo, hi) and ORs the range's
 * own summary into *statuses, *max_free and zones (zone_words words). */
static void summarize(geo_index *ix, size_t node, size_t lo, size_t hi, uint8_t *statuses,
                      uint64_t *max_free, uint64_t *zones) {
        if (hi - lo <= LEAF) {
                for (size_t i = lo; i < hi; i++) {
                        const struct point *p = &ix->points[i];
                        /* NOLINTNEXTLINE(clang-analyzer-core.uninitialized.ArraySubscript): as in tree_build */
                        const struct site *s = &ix->sites[p->slot];
                        *statuses |= (uint8_t)(1u << p->status);
                        if (p->free_bytes > *max_free)
                                *max_free = p->free_bytes;
                        for (uint32_t z = 0; z < s->zone_n; z++) {
                                uint32_t zone = ix->zone_members[s->zone_off + z];
                                zones[zone / 64] |= UINT64_C(1) << (zone % 64);
                        }
                }
                return;
        }

        struct node *nd = &ix->nodes[node];
        uint64_t *nz = ix->node_zones + node * ix->zone_words;
        size_t mid = lo + (hi - lo) / 2;

        nd->statuses = 0;
        nd->max_free = 0;
        summarize(ix, 2 * node + 1, lo, mid, &nd->statuses, &nd->max_free, nz);
        summarize(ix, 2 * node + 2, mid, hi, &nd->statuses, &nd->max_free, nz);
        *statuses |= nd->statuses;
        if (nd->max_free > *max_free)
                *max_free = nd->max_free;
        for (size_t w = 0; w < ix->zone_words; w++)
                zones[w] |= nz[w];
}

static int zone_cmp(const void *a, const void *b) {
        return strcmp(geo_zone_id(*(geo_zone *const *)a), geo_zone_id(*(geo_zone *const *)b));
}

int geo_site_check(const geo_site *site) {
        if (!site || !site->id || !*site->id || !geo_point_valid(site->lat, site->lon))
                return -EINVAL;
        if (site->status != GEO_SITE_ACTIVE && site->status != GEO_SITE_DRAINING &&
            site->status != GEO_SITE_DOWN)
                return -EINVAL;
        return 0;
}

/* Appends to the membership list, growing it as needed. */
static int members_push(geo_index *ix, size_t *cap, uint32_t zone) {
        if (ix->n_zone_members == *cap) {
                size_t ncap = *cap ? 2 * *cap : 64;
                uint32_t *m = realloc(ix->zone_members, ncap * sizeof(*m));
                if (!m)
                        return -ENOMEM;
                ix->zone_members = m;
                *cap = ncap;
        }
        ix->zone_members[ix->n_zone_members++] = zone;
        return 0;
}

int geo_index_build(geo_index **out, const geo_site *slots, size_t n_slots, geo_zone *const *zones,
                    size_t n_zones, uint32_t *const *member, const uint32_t *n_member,
                    uint64_t version) {
        geo_index *ix;
        size_t members_cap = 0, table_size = 4, off = 0, j = 0;
        int r;

        if (n_slots >= UINT32_MAX || n_zones >= UINT32_MAX)
                return -EINVAL;
        ix = calloc(1, sizeof(*ix));
        if (!ix)
                return -ENOMEM;
        atomic_init(&ix->refs, 1);
        ix->version = version;
        ix->n_slots = n_slots;
        for (size_t i = 0; i < n_slots; i++)
                if (slots[i].id) {
                        ix->n_sites++;
                        ix->names_size += strlen(slots[i].id) + 1;
                }
        while (table_size < 2 * ix->n_sites)
                table_size *= 2;
        ix->table_mask = table_size - 1;
        ix->n_nodes = ((size_t)1 << tree_levels(ix->n_sites)) - 1;
        ix->sites = calloc(n_slots ? n_slots : 1, sizeof(*ix->sites));
        ix->names = malloc(ix->names_size ? ix->names_size : 1);
        ix->points = malloc((ix->n_sites ? ix->n_sites : 1) * sizeof(*ix->points));
        ix->nodes = malloc((ix->n_nodes ? ix->n_nodes : 1) * sizeof(*ix->nodes));
        ix->table = calloc(table_size, sizeof(*ix->table));
        ix->zones = malloc((n_zones ? n_zones : 1) * sizeof(*ix->zones));
        ix->zone_words = (n_zones + 63) / 64;
        /* One extra set of words: the root's caller sums into it. */
        ix->node_zones = calloc((ix->n_nodes + 1) * ix->zone_words + 1, sizeof(*ix->node_zones));
        if (!ix->sites || !ix->names || !ix->points || !ix->nodes || !ix->table || !ix->zones ||
            !ix->node_zones) {
                r = -ENOMEM;
                goto fail;
        }
        for (size_t z = 0; z < n_zones; z++)
                ix->zones[ix->n_zones++] = geo_zone_ref(zones[z]);

        for (size_t i = 0; i < n_slots; i++) {
                const geo_site *s = &slots[i];
                struct site *d = &ix->sites[i];
                size_t len;

                if (!s->id)
                        continue;
                len = strlen(s->id) + 1;
                memcpy(ix->names + off, s->id, len);
                d->id = ix->names + off;
                off += len;
                d->lat = s->lat;
                d->lon = s->lon;
                d->free_bytes = s->free_bytes;
                d->status = (uint8_t)s->status;
                r = table_insert(ix, (uint32_t)i);
                if (r < 0)
                        goto fail;

                d->zone_off = (uint32_t)ix->n_zone_members;
                if (member) {
                        for (uint32_t m = 0; m < n_member[i]; m++) {
                                r = members_push(ix, &members_cap, member[i][m]);
                                if (r < 0)
                                        goto fail;
                        }
                } else {
                        for (size_t z = 0; z < n_zones; z++) {
                                r = geo_zone_covers(zones[z], s->lat, s->lon);
                                if (r > 0)
                                        r = members_push(ix, &members_cap, (uint32_t)z);
                                if (r < 0)
                                        goto fail;
                        }
                }
                d->zone_n = (uint32_t)(ix->n_zone_members - d->zone_off);

                struct point *p = &ix->points[j++];
                geo_ecef(s->lat, s->lon, p->c);
                p->free_bytes = s->free_bytes;
                p->slot = (uint32_t)i;
                p->status = (uint8_t)s->status;
        }
        tree_build(ix, 0, 0, ix->n_sites);
        {
                uint8_t statuses = 0;
                uint64_t max_free = 0;
                summarize(ix, 0, 0, ix->n_sites, &statuses, &max_free,
                          ix->node_zones + ix->n_nodes * ix->zone_words);
        }
        *out = ix;
        return 0;

fail:
        geo_index_unref(ix);
        return r;
}

int geo_index_new(geo_index **out, const geo_site *sites, size_t n_sites, geo_zone *const *zones,
                  size_t n_zones) {
        geo_zone **sorted;
        int r;

        if (!out || (n_sites && !sites) || (n_zones && !zones))
                return -EINVAL;
        for (size_t i = 0; i < n_sites; i++) {
                r = geo_site_check(&sites[i]);
                if (r < 0)
                        return r;
        }
        for (size_t z = 0; z < n_zones; z++)
                if (!zones[z])
                        return -EINVAL;
        sorted = malloc((n_zones ? n_zones : 1) * sizeof(*sorted));
        if (!sorted)
                return -ENOMEM;
        if (n_zones)
                memcpy(sorted, zones, n_zones * sizeof(*sorted));
        qsort(sorted, n_zones, sizeof(*sorted), zone_cmp);
        for (size_t z = 1; z < n_zones; z++)
                if (!strcmp(geo_zone_id(sorted[z - 1]), geo_zone_id(sorted[z]))) {
                        free(sorted);
                        return -EEXIST;
                }
        r = geo_index_build(out, sites, n_sites, sorted, n_zones, NULL, NULL, 0);
        free(sorted);
        return r;
}

geo_index *geo_index_ref(geo_index *ix) {
        if (ix)
                atomic_fetch_add_explicit(&ix->refs, 1, memory_order_relaxed);
        return ix;
}

geo_index *geo_index_unref(geo_index *ix) {
        if (!ix || atomic_fetch_sub_explicit(&ix->refs, 1, memory_order_acq_rel) != 1)
                return NULL;
        for (size_t z = 0; z < ix->n_zones; z++)
                geo_zone_unref(ix->zones[z]);
        free(ix->zones);
        free(ix->zone_members);
        free(ix->node_zones);
        free(ix->table);
        free(ix->nodes);
        free(ix->points);
        free(ix->names);
        free(ix->sites);
        free(ix);
        return NULL;
}

/* ---- looking things up ----------------------------------------------------- */

uint64_t geo_index_version(const geo_index *ix) {
        return ix->version;
}

size_t geo_index_slots(const geo_index *ix) {
        return ix->n_slots;
}

size_t geo_index_count(const geo_index *ix) {
        return ix->n_sites;
}

int geo_index_find(const geo_index *ix, const char *id, size_t *site) {
        if (!id)
                return -ENOENT;
        for (size_t i = geo_hash_id(id) & ix->table_mask; ix->table[i];
             i = (i + 1) & ix->table_mask)
                if (!strcmp(ix->sites[ix->table[i] - 1].id, id)) {
                        if (site)
                                *site = ix->table[i] - 1;
                        return 0;
                }
        return -ENOENT;
}

const char *geo_index_site_id(const geo_index *ix, size_t site) {
        return site < ix->n_slots ? ix->sites[site].id : NULL;
}

int geo_index_site(const geo_index *ix, size_t site, geo_site *out) {
        const struct site *s;

        if (site >= ix->n_slots || !ix->sites[site].id)
                return -ENOENT;
        s = &ix->sites[site];
        *out = (geo_site){
                .id = s->id,
                .lat = s->lat,
                .lon = s->lon,
                .status = (enum geo_status)s->status,
                .free_bytes = s->free_bytes,
        };
        return 0;
}

static long zone_find(const geo_index *ix, const char *id) {
        size_t lo = 0, hi = ix->n_zones;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = strcmp(geo_zone_id(ix->zones[mid]), id);
                if (!c)
                        return (long)mid;
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return -1;
}

int geo_index_site_in_zone(const geo_index *ix, size_t site, const char *zone_id) {
        long z;

        if (site >= ix->n_slots || !ix->sites[site].id || !zone_id)
                return -ENOENT;
        z = zone_find(ix, zone_id);
        if (z < 0)
                return -ENOENT;
        for (uint32_t i = 0; i < ix->sites[site].zone_n; i++)
                if (ix->zone_members[ix->sites[site].zone_off + i] == (uint32_t)z)
                        return 1;
        return 0;
}

size_t geo_index_memory(const geo_index *ix) {
        return sizeof(*ix) + ix->n_slots * sizeof(*ix->sites) + ix->names_size +
               ix->n_sites * sizeof(*ix->points) + ix->n_nodes * sizeof(*ix->nodes) +
               (ix->table_mask + 1) * sizeof(*ix->table) + ix->n_zones * sizeof(*ix->zones) +
               ix->n_zone_members * sizeof(*ix->zone_members) +
               ((ix->n_nodes + 1) * ix->zone_words + 1) * sizeof(*ix->node_zones);
}

/* ---- querying -------------------------------------------------------------- */

/* Zone sets up to this many zones live on the stack. */
#define ZONESET_STACK_WORDS 16

struct query {
        const geo_index *ix;
        double lat, lon;
        double q[3];
        const geo_filter *filter; /* NULL: no condition */
        unsigned statuses;
        uint64_t min_free;
        const uint64_t *zoneset; /* NULL: anywhere */
        geo_hit *hits;           /* a max-heap of the best so far */
        size_t k, n;
        double bound2; /* prune cells and sites beyond this squared chord */
        bool cut;      /* step 1 filled the heap: its worst is (cut_d2, cut_slot) */
        double cut_d2;
        uint32_t cut_slot;
        double radius; /* for within */
        size_t cap;
        int err;
};

static double chord2(const double q[3], const struct point *p) {
        double dx = p->c[0] - q[0], dy = p->c[1] - q[1], dz = p->c[2] - q[2];
        return dx * dx + dy * dy + dz * dz;
}

/*
 * The squared chord within which a site could still be at most tau away.
 * Two lower bounds on the geodesic s hold for a chord c: s >= c, and
 * s >= 2b asin(c / 2a) (the ellipsoid is the unit sphere stretched by at most
 * a and at least b). The second is the tighter one at long range, where the
 * chord alone would let in half the world.
 */
static double reach2(double tau) {
        double r = tau * (1.0 + SLACK_REL) + SLACK_ABS_M;
        double c = r, half = r / (2 * GEO_WGS84_B);

        if (half < M_PI / 2)
                c = fmin(c, 2 * GEO_WGS84_A * sin(half));
        c += SLACK_ABS_M;
        return c * c;
}

static bool cheap_ok(const struct query *qy, const struct point *p) {
        if (qy->statuses && !(qy->statuses & (1u << p->status)))
                return false;
        return p->free_bytes >= qy->min_free;
}

static bool full_ok(const struct query *qy, uint32_t slot) {
        if (qy->zoneset) {
                const struct site *s = &qy->ix->sites[slot];
                bool in = false;
                for (uint32_t i = 0; i < s->zone_n && !in; i++) {
                        uint32_t z = qy->ix->zone_members[s->zone_off + i];
                        in = qy->zoneset[z / 64] >> (z % 64) & 1;
                }
                if (!in)
                        return false;
        }
        if (qy->filter && qy->filter->accept &&
            !qy->filter->accept(qy->filter->userdata, qy->ix, slot))
                return false;
        return true;
}

/* Whether the subtree under an internal node may hold an eligible site. */
static bool node_may(const struct query *qy, size_t node) {
        const struct node *nd = &qy->ix->nodes[node];

        if (qy->statuses && !(qy->statuses & nd->statuses))
                return false;
        if (nd->max_free < qy->min_free)
                return false;
        if (qy->zoneset) {
                const uint64_t *z = qy->ix->node_zones + node * qy->ix->zone_words;
                for (size_t w = 0; w < qy->ix->zone_words; w++)
                        if (z[w] & qy->zoneset[w])
                                return true;
                return false;
        }
        return true;
}

/* Step 1 orders by (squared chord, slot): any total order will do. */
static bool chord_less(double a, uint32_t sa, double b, uint32_t sb) {
        return a < b || (a == b && sa < sb);
}

/* Answers order by (distance, id), as brute force does. */
static bool hit_less(const geo_index *ix, const geo_hit *a, const geo_hit *b) {
        if (a->distance_m != b->distance_m)
                return a->distance_m < b->distance_m;
        return strcmp(ix->sites[a->site].id, ix->sites[b->site].id) < 0;
}

static bool chord_hit_less(const geo_index *ix, const geo_hit *a, const geo_hit *b) {
        return chord_less(a->distance_m, (uint32_t)a->site, b->distance_m, (uint32_t)b->site);
}

typedef bool (*hit_less_fn)(const geo_index *ix, const geo_hit *a, const geo_hit *b);

static void heap_down(const geo_index *ix, geo_hit *h, size_t n, size_t i, hit_less_fn less) {
        for (;;) {
                size_t l = 2 * i + 1, r = l + 1, m = i;
                if (l < n && less(ix, &h[m], &h[l]))
                        m = l;
                if (r < n && less(ix, &h[m], &h[r]))
                        m = r;
                if (m == i)
                        return;
                geo_hit t = h[i];
                h[i] = h[m];
                h[m] = t;
                i = m;
        }
}

static void heap_up(const geo_index *ix, geo_hit *h, size_t i, hit_less_fn less) {
        while (i > 0) {
                size_t parent = (i - 1) / 2;
                if (!less(ix, &h[parent], &h[i]))
                        return;
                geo_hit t = h[i];
                h[i] = h[parent];
                h[parent] = t;
                i = parent;
        }
}

/* Adds a hit to a max-heap of at most k, dropping the worst when full. */
static void heap_offer(struct query *qy, geo_hit hit, hit_less_fn less) {
        if (qy->n < qy->k) {
                qy->hits[qy->n] = hit;
                heap_up(qy->ix, qy->hits, qy->n++, less);
        } else {
                qy->hits[0] = hit;
                heap_down(qy->ix, qy->hits, qy->n, 0, less);
        }
}

/* What a walk does at a leaf of the tree: its points lo..hi. */
typedef void (*leaf_fn)(struct query *qy, size_t lo, size_t hi);

/*
 * The descent every query shares: the subtree at `node` (points lo..hi), the
 * near child first, the far one only while its cell may hold a point within
 * qy->bound2 (rd: the squared distance to the cell, kept by the Arya–Mount
 * increments in off[], one an axis), `leaf` on every leaf reached. What the
 * query keeps is the leaf's; the walk stops once qy->err is set.
 */
static void walk(struct query *qy, size_t node, size_t lo, size_t hi, double rd, double off[3],
                 leaf_fn leaf) {
        if (qy->err)
                return;
        if (hi - lo <= LEAF) {
                leaf(qy, lo, hi);
                return;
        }
        if (!node_may(qy, node))
                return;

        const struct node *nd = &qy->ix->nodes[node];
        size_t mid = lo + (hi - lo) / 2;
        double diff = qy->q[nd->axis] - nd->split;
        double saved = off[nd->axis], far_rd = rd - saved * saved + diff * diff;

        if (diff < 0) {
                walk(qy, 2 * node + 1, lo, mid, rd, off, leaf);
                if (far_rd <= qy->bound2) {
                        off[nd->axis] = diff;
                        walk(qy, 2 * node + 2, mid, hi, far_rd, off, leaf);
                        off[nd->axis] = saved;
                }
        } else {
                walk(qy, 2 * node + 2, mid, hi, rd, off, leaf);
                if (far_rd <= qy->bound2) {
                        off[nd->axis] = diff;
                        walk(qy, 2 * node + 1, lo, mid, far_rd, off, leaf);
                        off[nd->axis] = saved;
                }
        }
}

/* Step 1: the k eligible sites nearest by chord, among a leaf's points lo..hi. */
static void leaf_chord(struct query *qy, size_t lo, size_t hi) {
        const geo_index *ix = qy->ix;

        for (size_t i = lo; i < hi; i++) {
                const struct point *p = &ix->points[i];
                double d2;

                if (!cheap_ok(qy, p))
                        continue;
                d2 = chord2(qy->q, p);
                if (qy->n == qy->k &&
                    !chord_less(d2, p->slot, qy->hits[0].distance_m, (uint32_t)qy->hits[0].site))
                        continue;
                if (!full_ok(qy, p->slot))
                        continue;
                heap_offer(qy, (geo_hit){ .site = p->slot, .distance_m = d2 }, chord_hit_less);
                if (qy->n == qy->k)
                        qy->bound2 = qy->hits[0].distance_m;
        }
}

/* Step 3: a leaf's sites whose chord is within reach of the k-th geodesic so far. */
static void leaf_reach(struct query *qy, size_t lo, size_t hi) {
        const geo_index *ix = qy->ix;

        for (size_t i = lo; i < hi; i++) {
                const struct point *p = &ix->points[i];
                const struct site *s = &ix->sites[p->slot];
                geo_hit hit;
                double d2;
                bool seen = false;

                if (!cheap_ok(qy, p))
                        continue;
                d2 = chord2(qy->q, p);
                if (d2 > qy->bound2)
                        continue;
                /* Eligible sites at or before the cut are step 1's. */
                if (qy->cut && !chord_less(qy->cut_d2, qy->cut_slot, d2, p->slot))
                        continue;
                if (!full_ok(qy, p->slot))
                        continue;
                hit = (geo_hit){ .site = p->slot,
                                 .distance_m = geo_distance_m(qy->lat, qy->lon, s->lat, s->lon) };
                if (!hit_less(ix, &hit, &qy->hits[0]))
                        continue;
                /* The cut makes this impossible; it is cheap to be sure. */
                for (size_t h = 0; h < qy->n && !seen; h++)
                        seen = qy->hits[h].site == hit.site;
                if (seen)
                        continue;
                heap_offer(qy, hit, hit_less);
                qy->bound2 = reach2(qy->hits[0].distance_m);
        }
}

/* Sets up the query's point and filter. The zone set goes in words (stack
 * storage of ZONESET_STACK_WORDS) or, when larger, in *heap to be freed. */
static int query_init(struct query *qy, const geo_index *ix, double lat, double lon,
                      const geo_filter *filter, uint64_t *words, uint64_t **heap) {
        *heap = NULL;
        if (!geo_point_valid(lat, lon))
                return -EINVAL;
        *qy = (struct query){
                .ix = ix, .lat = lat, .lon = lon, .filter = filter, .bound2 = INFINITY
        };
        geo_ecef(lat, lon, qy->q);
        if (!filter)
                return 0;
        qy->statuses = filter->statuses;
        qy->min_free = filter->min_free_bytes;
        if (filter->n_zones) {
                size_t n_words = (ix->n_zones + 63) / 64;
                uint64_t *set = words;

                if (!filter->zones)
                        return -EINVAL;
                if (n_words > ZONESET_STACK_WORDS) {
                        set = *heap = calloc(n_words, sizeof(*set));
                        if (!set)
                                return -ENOMEM;
                } else {
                        memset(set, 0, ZONESET_STACK_WORDS * sizeof(*set));
                }
                for (size_t i = 0; i < filter->n_zones; i++) {
                        long z = filter->zones[i] ? zone_find(ix, filter->zones[i]) : -1;
                        if (z < 0) {
                                free(*heap);
                                *heap = NULL;
                                return -ENOENT;
                        }
                        set[z / 64] |= UINT64_C(1) << (z % 64);
                }
                qy->zoneset = set;
        }
        return 0;
}

int geo_index_site_eligible(const geo_index *ix, size_t site, const geo_filter *filter) {
        const struct site *s;
        bool in = false;

        if (!filter)
                return site < ix->n_slots && ix->sites[site].id ? 1 : 0;
        if (filter->n_zones && !filter->zones)
                return -EINVAL;
        /* As query_init: an unknown zone fails whatever the site. */
        for (size_t i = 0; i < filter->n_zones; i++)
                if (!filter->zones[i] || zone_find(ix, filter->zones[i]) < 0)
                        return -ENOENT;
        if (site >= ix->n_slots || !ix->sites[site].id)
                return 0;
        s = &ix->sites[site];
        if (filter->statuses && !(filter->statuses & (1u << s->status)))
                return 0;
        if (s->free_bytes < filter->min_free_bytes)
                return 0;
        for (size_t i = 0; i < filter->n_zones && !in; i++) {
                uint32_t z = (uint32_t)zone_find(ix, filter->zones[i]);
                for (uint32_t j = 0; j < s->zone_n && !in; j++)
                        in = ix->zone_members[s->zone_off + j] == z;
        }
        if (filter->n_zones && !in)
                return 0;
        if (filter->accept && !filter->accept(filter->userdata, ix, site))
                return 0;
        return 1;
}

int geo_index_nearest(const geo_index *ix, double lat, double lon, const geo_filter *filter,
                      geo_hit *hits, size_t k) {
        uint64_t words[ZONESET_STACK_WORDS], *heap;
        double off[3] = { 0, 0, 0 };
        struct query qy;
        int r;

        if (k > INT_MAX || (k && !hits))
                return -EINVAL;
        r = query_init(&qy, ix, lat, lon, filter, words, &heap);
        if (r < 0)
                return r;
        if (k == 0 || ix->n_sites == 0)
                goto out;
        qy.hits = hits;
        qy.k = k;

        walk(&qy, 0, 0, ix->n_sites, 0.0, off, leaf_chord);
        if (qy.n == 0)
                goto out;

        /* Step 2. When step 1 found fewer than k it saw every eligible site,
         * and there is nothing left for step 3. */
        qy.cut = qy.n == k;
        qy.cut_d2 = hits[0].distance_m;
        qy.cut_slot = (uint32_t)hits[0].site;
        for (size_t i = 0; i < qy.n; i++) {
                const struct site *s = &ix->sites[hits[i].site];
                hits[i].distance_m = geo_distance_m(lat, lon, s->lat, s->lon);
        }
        for (size_t i = qy.n / 2; i-- > 0;)
                heap_down(ix, hits, qy.n, i, hit_less);

        if (qy.cut) {
                qy.bound2 = reach2(hits[0].distance_m);
                off[0] = off[1] = off[2] = 0;
                walk(&qy, 0, 0, ix->n_sites, 0.0, off, leaf_reach);
        }

        /* Heap to ascending order. */
        for (size_t n = qy.n; n > 1; n--) {
                geo_hit t = hits[0];
                hits[0] = hits[n - 1];
                hits[n - 1] = t;
                heap_down(ix, hits, n - 1, 0, hit_less);
        }
out:
        free(heap);
        return (int)qy.n;
}

/* Within: a leaf's eligible sites at most the radius away, appended to the hits. */
static void leaf_within(struct query *qy, size_t lo, size_t hi) {
        const geo_index *ix = qy->ix;

        for (size_t i = lo; i < hi; i++) {
                const struct point *p = &ix->points[i];
                const struct site *s = &ix->sites[p->slot];
                double d;

                if (!cheap_ok(qy, p) || chord2(qy->q, p) > qy->bound2 || !full_ok(qy, p->slot))
                        continue;
                d = geo_distance_m(qy->lat, qy->lon, s->lat, s->lon);
                if (d > qy->radius)
                        continue;
                if (qy->n == qy->cap) {
                        size_t cap = qy->cap ? 2 * qy->cap : 16;
                        geo_hit *h = realloc(qy->hits, cap * sizeof(*h));
                        if (!h) {
                                qy->err = -ENOMEM;
                                return;
                        }
                        qy->hits = h;
                        qy->cap = cap;
                }
                qy->hits[qy->n++] = (geo_hit){ .site = p->slot, .distance_m = d };
        }
}

static int hit_cmp(const void *a, const void *b, void *ix) {
        if (hit_less(ix, a, b))
                return -1;
        return hit_less(ix, b, a) ? 1 : 0;
}

int geo_index_within(const geo_index *ix, double lat, double lon, double radius_m,
                     const geo_filter *filter, geo_hit **hits, size_t *n_hits) {
        uint64_t words[ZONESET_STACK_WORDS], *heap;
        double off[3] = { 0, 0, 0 };
        struct query qy;
        int r;

        if (!hits || !n_hits || !isfinite(radius_m) || radius_m < 0)
                return -EINVAL;
        r = query_init(&qy, ix, lat, lon, filter, words, &heap);
        if (r < 0)
                return r;
        qy.radius = radius_m;
        qy.bound2 = reach2(radius_m);
        if (ix->n_sites)
                walk(&qy, 0, 0, ix->n_sites, 0.0, off, leaf_within);
        free(heap);
        if (qy.err) {
                free(qy.hits);
                return qy.err;
        }
        if (qy.n > 1)
                qsort_r(qy.hits, qy.n, sizeof(*qy.hits), hit_cmp, (void *)ix);
        *hits = qy.hits;
        *n_hits = qy.n;
        return 0;
}
