/*
 * Residency of the transfers in flight. A snapshot's zones may narrow, or a
 * zone be redrawn, after a transfer towards a datacenter was queued; the
 * decision that queued it was right then and is wrong now. With every
 * reload of the catalog the scheduler cancels the open transfers whose
 * target the snapshot's zones no longer allow, with the reason and an audit
 * event, so that no copy lands where it may not live. Every scheduler looks;
 * ending a transfer twice changes nothing (homing_transfer_ended).
 */
#include <stdint.h>

#include "base/config.h"
#include "base/log.h"
#include "scheduler/internal.h"
#include "scheduler/world.h"
#include "store/store.h"

/* The open transfers of snapshots that are restricted to zones at all. */
static const char open_restricted_sql[] =
        "SELECT t.id, t.to_dc, s.allowed_zones::text FROM transfers t"
        " JOIN snapshots s ON s.id = t.snapshot_id"
        " WHERE t.state IN ('queued', 'running') AND s.allowed_zones <> '{}'";

static const char cancel_sql[] =
        "WITH ended AS ("
        "  SELECT t.id, t.snapshot_id, t.from_dc, t.to_dc FROM transfers t"
        "  WHERE t.id = ANY ($1::bigint[])"
        "    AND homing_transfer_ended(t.id, 'cancelled',"
        "          'the target ' || t.to_dc || ' is outside the snapshot''s zones'))"
        " INSERT INTO outbox (topic, key, payload)"
        " SELECT $2, snapshot_id, homing_cloudevent("
        "   'transfer-' || id || '-cancelled', '/homing/scheduler',"
        "   'io.homing.transfer.cancelled', now(), snapshot_id,"
        "   jsonb_build_object('transfer_id', id, 'snapshot_id', snapshot_id,"
        "     'from_dc', from_dc, 'to_dc', to_dc, 'reason', 'outside_zones'))"
        " FROM ended RETURNING payload->'data'->>'transfer_id', key, payload->'data'->>'to_dc'";

void scheduler_cancel_outside_zones(struct upkeep *u) {
        struct store_result *open = NULL, *cancelled = NULL;
        struct store_array ids;

        store_array_init(&ids);
        if (store_exec(u->db, open_restricted_sql, 0, NULL, &open) < 0)
                goto out;
        for (size_t i = 0; i < store_rows(open); i++) {
                uint32_t site = world_site(u->world, store_text(open, i, 1));
                uint16_t zones = world_zone_set(u->world, store_text(open, i, 2));
                /* A site the catalog does not know yet, or a set it could not
                 * keep, says nothing about where the snapshot may live. */
                if (site == ENGINE_NO_SITE || zones == UINT16_MAX)
                        continue;
                if (!engine_site_allowed(world_context(u->world), zones, site))
                        store_array_add_int(&ids, store_int(open, i, 0));
        }
        if (ids.n) {
                const char *params[2] = { store_array_text(&ids), u->cfg->topic_audit };
                if (params[0] && store_exec(u->db, cancel_sql, 2, params, &cancelled) == 0)
                        for (size_t i = 0; i < store_rows(cancelled); i++)
                                log_info("scheduler",
                                         "transfer %s of %s cancelled: its target %s is outside "
                                         "the snapshot's zones",
                                         store_text(cancelled, i, 0), store_text(cancelled, i, 1),
                                         store_text(cancelled, i, 2));
        }
out:
        store_result_free(open);
        store_result_free(cancelled);
        store_array_fini(&ids);
}
