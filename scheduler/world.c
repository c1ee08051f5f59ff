/*
 * The engine's view of the catalog. Datacenters go into a geo_catalog, whose
 * published index the engine searches; free bytes are capacity less used
 * less reserved, as PostgreSQL had them at the last load.
 */
#include "scheduler/world.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "store/store.h"

struct template_entry {
        char *id;
        uint64_t *replicas;
};

struct world {
        geo_catalog *catalog;
        geo_index *index;  /* the version decisions use now */
        char **zone_texts; /* GeoJSON of each zone in the catalog, to spot changes */
        char **zone_ids;
        size_t n_zones;
        struct template_entry *template_entries;
        struct engine_template *templates;
        size_t n_templates;
        char **zone_set_texts; /* interned zone sets, as their PostgreSQL text */
        struct engine_zone_set *zone_sets;
        size_t n_zone_sets;
        struct engine_context ctx;
};

int world_new(struct world **out) {
        struct world *w = calloc(1, sizeof(*w));
        int r;

        if (!w)
                return -ENOMEM;
        r = geo_catalog_new(&w->catalog);
        if (r < 0) {
                free(w);
                return r;
        }
        w->index = geo_catalog_acquire(w->catalog);
        /* Zone set 0 is "anywhere". */
        if (world_zone_set(w, "{}") != 0) {
                world_free(w);
                return -ENOMEM;
        }
        w->ctx.index = w->index;
        w->ctx.zone_sets = w->zone_sets;
        w->ctx.n_zone_sets = w->n_zone_sets;
        *out = w;
        return 0;
}

static void templates_clear(struct world *w) {
        for (size_t i = 0; i < w->n_templates; i++) {
                free(w->template_entries[i].id);
                free(w->template_entries[i].replicas);
        }
        free(w->template_entries);
        free(w->templates);
        w->template_entries = NULL;
        w->templates = NULL;
        w->n_templates = 0;
}

struct world *world_free(struct world *w) {
        if (!w)
                return NULL;
        templates_clear(w);
        for (size_t i = 0; i < w->n_zones; i++) {
                free(w->zone_texts[i]);
                free(w->zone_ids[i]);
        }
        free(w->zone_texts);
        free(w->zone_ids);
        for (size_t i = 0; i < w->n_zone_sets; i++) {
                free(w->zone_set_texts[i]);
                for (size_t j = 0; j < w->zone_sets[i].n; j++)
                        free((char *)w->zone_sets[i].ids[j]);
                free((char **)w->zone_sets[i].ids);
        }
        free(w->zone_set_texts);
        free(w->zone_sets);
        geo_index_unref(w->index);
        geo_catalog_free(w->catalog);
        free(w);
        return NULL;
}

static enum geo_status status_of(const char *s) {
        return !strcmp(s, "active")     ? GEO_SITE_ACTIVE
               : !strcmp(s, "draining") ? GEO_SITE_DRAINING
                                        : GEO_SITE_DOWN;
}

static int load_sites(struct world *w, struct store *db) {
        struct store_result *res = NULL;
        size_t slots = geo_index_slots(w->index);
        int r;

        r = store_exec(db,
                       "SELECT id, lat, lon, status,"
                       " greatest(capacity_bytes - used_bytes - reserved_bytes, 0)"
                       " FROM datacenters",
                       0, NULL, &res);
        if (r < 0)
                return r;
        for (size_t i = 0; i < store_rows(res) && r == 0; i++) {
                geo_site site = { store_text(res, i, 0), store_double(res, i, 1),
                                  store_double(res, i, 2), status_of(store_text(res, i, 3)),
                                  (uint64_t)store_int(res, i, 4) };
                r = geo_catalog_put_site(w->catalog, &site);
        }
        /* Sites PostgreSQL no longer has. */
        for (size_t s = 0; s < slots && r == 0; s++) {
                const char *id = geo_index_site_id(w->index, s);
                bool present = false;
                for (size_t i = 0; id && i < store_rows(res) && !present; i++)
                        present = !strcmp(store_text(res, i, 0), id);
                if (id && !present)
                        r = geo_catalog_remove_site(w->catalog, id);
        }
        store_result_free(res);
        return r;
}

static int load_zones(struct world *w, struct store *db) {
        struct store_result *res = NULL;
        char **texts = NULL, **ids = NULL;
        size_t n;
        int r;

        r = store_exec(db, "SELECT id, geojson::text FROM zones ORDER BY id", 0, NULL, &res);
        if (r < 0)
                return r;
        n = store_rows(res);
        texts = calloc(n + 1, sizeof(*texts));
        ids = calloc(n + 1, sizeof(*ids));
        if (!texts || !ids) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < n && r == 0; i++) {
                const char *id = store_text(res, i, 0), *text = store_text(res, i, 1);
                bool same = false;
                ids[i] = strdup(id);
                texts[i] = strdup(text);
                if (!ids[i] || !texts[i]) {
                        r = -ENOMEM;
                        break;
                }
                for (size_t j = 0; j < w->n_zones && !same; j++)
                        same = !strcmp(w->zone_ids[j], id) && !strcmp(w->zone_texts[j], text);
                if (!same) {
                        char err[256];
                        geo_zone *zone = NULL;
                        if (geo_zone_new(&zone, id, text, err, sizeof(err)) < 0) {
                                /* The API validates zones; one bad row must not stop decisions. */
                                log_error("scheduler", "zone %s is not usable: %s", id, err);
                                continue;
                        }
                        r = geo_catalog_put_zone(w->catalog, zone);
                        geo_zone_unref(zone);
                }
        }
        for (size_t j = 0; j < w->n_zones && r == 0; j++) {
                bool present = false;
                for (size_t i = 0; i < n && !present; i++)
                        present = !strcmp(ids[i], w->zone_ids[j]);
                if (!present)
                        geo_catalog_remove_zone(w->catalog, w->zone_ids[j]);
        }
        if (r == 0) {
                char **swap_t = w->zone_texts, **swap_i = w->zone_ids;
                size_t swap_n = w->n_zones;
                w->zone_texts = texts;
                w->zone_ids = ids;
                w->n_zones = n;
                texts = swap_t;
                ids = swap_i;
                n = swap_n;
        }
out:
        for (size_t i = 0; texts && i < n; i++)
                free(texts[i]);
        for (size_t i = 0; ids && i < n; i++)
                free(ids[i]);
        free(texts);
        free(ids);
        store_result_free(res);
        return r;
}

static int load_templates(struct world *w, struct store *db) {
        struct store_result *res = NULL;
        struct template_entry *entries;
        struct engine_template *templates;
        size_t n, words = geo_index_slots(w->index) / 64 + 1;
        int r;

        r = store_exec(db,
                       "SELECT t.id, t.size_bytes, r.datacenter_id FROM templates t"
                       " LEFT JOIN template_replicas r ON r.template_id = t.id"
                       " ORDER BY t.id",
                       0, NULL, &res);
        if (r < 0)
                return r;
        n = 0;
        for (size_t i = 0; i < store_rows(res); i++)
                n += i == 0 || strcmp(store_text(res, i, 0), store_text(res, i - 1, 0)) != 0;
        entries = calloc(n + 1, sizeof(*entries));
        templates = calloc(n + 1, sizeof(*templates));
        if (!entries || !templates) {
                free(entries);
                free(templates);
                store_result_free(res);
                return -ENOMEM;
        }
        for (size_t i = 0, t = (size_t)-1; i < store_rows(res); i++) {
                const char *dc = store_text(res, i, 2);
                uint32_t site;
                if (i == 0 || strcmp(store_text(res, i, 0), store_text(res, i - 1, 0)) != 0) {
                        t++;
                        entries[t].id = strdup(store_text(res, i, 0));
                        entries[t].replicas = calloc(words, sizeof(uint64_t));
                        if (!entries[t].id || !entries[t].replicas)
                                r = -ENOMEM;
                        templates[t] = (struct engine_template){ (uint64_t)store_int(res, i, 1),
                                                                 entries[t].replicas, words };
                }
                if (r == 0 && dc && (site = world_site(w, dc)) != ENGINE_NO_SITE)
                        entries[t].replicas[site / 64] |= 1ULL << (site % 64);
        }
        store_result_free(res);
        templates_clear(w);
        w->template_entries = entries;
        w->templates = templates;
        w->n_templates = n;
        return r;
}

int world_load(struct world *w, struct store *db) {
        int r = load_sites(w, db);

        if (r == 0)
                r = load_zones(w, db);
        if (r == 0)
                r = geo_catalog_publish(w->catalog);
        if (r < 0) {
                log_error("scheduler", "cannot load the catalog; deciding on the previous one");
                return r;
        }
        geo_index_unref(w->index);
        w->index = geo_catalog_acquire(w->catalog);
        w->ctx.index = w->index;
        r = load_templates(w, db);
        w->ctx.templates = w->templates;
        w->ctx.n_templates = w->n_templates;
        return r;
}

const struct engine_context *world_context(const struct world *w) {
        return &w->ctx;
}

uint32_t world_site(const struct world *w, const char *datacenter_id) {
        size_t site;
        if (!datacenter_id || geo_index_find(w->index, datacenter_id, &site) < 0)
                return ENGINE_NO_SITE;
        return (uint32_t)site;
}

const char *world_site_id(const struct world *w, uint32_t site) {
        return site == ENGINE_NO_SITE ? NULL : geo_index_site_id(w->index, site);
}

uint16_t world_template(const struct world *w, const char *template_id) {
        for (size_t i = 0; i < w->n_templates && i < UINT16_MAX; i++)
                if (!strcmp(w->template_entries[i].id, template_id))
                        return (uint16_t)i;
        return UINT16_MAX;
}

/* The zone ids of a text array; a NULL among them is refused (no zone has none). */
static int split_array(const char *text, struct engine_zone_set *out) {
        char **ids;
        size_t n;
        int r = store_array_parse(text, &ids, &n);

        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                if (!ids[i]) {
                        store_array_items_free(ids, n);
                        return -EINVAL;
                }
        }
        out->ids = (const char **)ids;
        out->n = n;
        return 0;
}

uint16_t world_zone_set(struct world *w, const char *pg_array) {
        struct engine_zone_set set;
        struct engine_zone_set *sets;
        char **texts;

        if (!pg_array)
                pg_array = "{}";
        for (size_t i = 0; i < w->n_zone_sets; i++)
                if (!strcmp(w->zone_set_texts[i], pg_array))
                        return (uint16_t)i;
        if (w->n_zone_sets >= UINT16_MAX || split_array(pg_array, &set) < 0)
                return UINT16_MAX;
        sets = realloc(w->zone_sets, (w->n_zone_sets + 1) * sizeof(*sets));
        if (sets)
                w->zone_sets = sets;
        texts = realloc(w->zone_set_texts, (w->n_zone_sets + 1) * sizeof(*texts));
        if (texts)
                w->zone_set_texts = texts;
        if (!sets || !texts || !(w->zone_set_texts[w->n_zone_sets] = strdup(pg_array))) {
                for (size_t j = 0; j < set.n; j++)
                        free((char *)set.ids[j]);
                free((char **)set.ids);
                return UINT16_MAX;
        }
        w->zone_sets[w->n_zone_sets] = set;
        w->ctx.zone_sets = w->zone_sets;
        w->ctx.n_zone_sets = ++w->n_zone_sets;
        return (uint16_t)(w->n_zone_sets - 1);
}
