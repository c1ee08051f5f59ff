/*
 * world, the parts that need no database: a snapshot's zone set, given as
 * PostgreSQL writes a text array, is parsed (quoted ids included) and
 * interned; what is not an array, or holds a NULL, is refused, which the
 * engine reads as "nowhere". Unknown sites and templates have no index.
 */
#include <stdint.h>
#include <string.h>

#include "scheduler/engine.h"
#include "scheduler/world.h"
#include "tap.h"

TEST(zone_sets_are_parsed_and_interned) {
        struct world *w = NULL;
        const struct engine_context *ctx;
        uint16_t eu, again, quoted;

        CHECK(world_new(&w) == 0);
        CHECK(world_zone_set(w, "{}") == 0);
        CHECK(world_zone_set(w, NULL) == 0);
        eu = world_zone_set(w, "{eu,ch}");
        again = world_zone_set(w, "{eu,ch}");
        quoted = world_zone_set(w, "{\"zone one\",\"a\\\\b\",eu}");
        CHECK(eu == 1 && again == eu && quoted == 2);
        ctx = world_context(w);
        CHECK(ctx->n_zone_sets == 3);
        CHECK(ctx->zone_sets[0].n == 0);
        CHECK(ctx->zone_sets[eu].n == 2);
        if (ctx->zone_sets[eu].n == 2) {
                CHECK_STR(ctx->zone_sets[eu].ids[0], "eu");
                CHECK_STR(ctx->zone_sets[eu].ids[1], "ch");
        }
        CHECK(ctx->zone_sets[quoted].n == 3);
        if (ctx->zone_sets[quoted].n == 3) {
                CHECK_STR(ctx->zone_sets[quoted].ids[0], "zone one");
                CHECK_STR(ctx->zone_sets[quoted].ids[1], "a\\b");
                CHECK_STR(ctx->zone_sets[quoted].ids[2], "eu");
        }
        w = world_free(w);
        CHECK(w == NULL);
}

TEST(what_is_not_a_set_of_zones_is_refused) {
        struct world *w = NULL;

        CHECK(world_new(&w) == 0);
        CHECK(world_zone_set(w, "eu") == UINT16_MAX);
        CHECK(world_zone_set(w, "{eu") == UINT16_MAX);
        CHECK(world_zone_set(w, "{{eu}}") == UINT16_MAX);
        CHECK(world_zone_set(w, "{eu,NULL}") == UINT16_MAX);
        CHECK(world_context(w)->n_zone_sets == 1); /* nothing kept */
        world_free(w);
}

TEST(unknown_sites_and_templates_have_no_index) {
        struct world *w = NULL;

        CHECK(world_new(&w) == 0);
        CHECK(world_site(w, "aws-eu-west-3") == ENGINE_NO_SITE);
        CHECK(world_site_id(w, ENGINE_NO_SITE) == NULL);
        CHECK(world_template(w, "debian-12") == UINT16_MAX);
        world_free(w);
}

TAP_MAIN(TAP_TEST(zone_sets_are_parsed_and_interned),
         TAP_TEST(what_is_not_a_set_of_zones_is_refused),
         TAP_TEST(unknown_sites_and_templates_have_no_index))
