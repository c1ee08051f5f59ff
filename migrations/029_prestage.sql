-- Pre-staged copies (README "Pre-staging"): a designated copy has a reason.
-- 'protection' is what migration 020 made: a warm replica its priority
-- level's protection policy asks for, placed and released by the replica
-- pass (scheduler/replicas.c). 'prestage' is a copy at the datacenter
-- nearest where the user is about to go (an announced trip), made and
-- released by the pre-staging pass (scheduler/prestage.c) for that trip:
-- the replica pass neither counts it towards the level's replicas nor
-- releases it as surplus. Both are verified inactive copies, never evicted
-- while designated, their bytes counted as used at their datacenter.
--
-- What a pre-staged copy is to the other readers of `replicas`:
-- - failover (homing_failover, _follow) may activate it: it is a verified
--   copy at a site that is up, and the most current copy wins, whatever it
--   was made for (a copy is better than an unrecoverable snapshot);
-- - a failover rehearsal may likewise start its throwaway VM from it;
-- - an evacuation's plan prefers a protection replica's site, then it;
-- - a move onto its site ends the designation (homing_transfer_succeeded,
--   migration 020): the move on arrival is what it was made for;
-- - it has no RPO: replica_lag says rpo_s NULL for it, so it is never
--   rpo_breached, and /metrics' replica gauges count protection replicas
--   only; GET /v1/snapshots/{id} lists it among `replicas` with its reason.
-- When the replica pass chooses a site that holds a pre-staged copy, the
-- designation becomes a protection one (the copy is kept either way).
ALTER TABLE replicas
    ADD COLUMN reason text NOT NULL DEFAULT 'protection'
        CHECK (reason IN ('protection', 'prestage')),
    -- the announced trip it serves; NULL once the trip was withdrawn
    ADD COLUMN trip_id bigint REFERENCES trips (id) ON DELETE SET NULL,
    -- when the trip is over and the copy is to be released
    ADD COLUMN ends_at timestamptz,
    ADD CONSTRAINT replicas_prestage_ends CHECK ((reason = 'prestage') = (ends_at IS NOT NULL)),
    ADD CONSTRAINT replicas_trip_prestage CHECK (trip_id IS NULL OR reason = 'prestage');
CREATE INDEX replicas_prestaged ON replicas (snapshot_id) WHERE reason = 'prestage';
CREATE INDEX replicas_by_trip ON replicas (trip_id) WHERE trip_id IS NOT NULL;

-- As in 020, with no RPO for a pre-staged copy, and the reason, trip and
-- end last.
CREATE OR REPLACE VIEW replica_lag AS
SELECT r.snapshot_id, r.datacenter_id, s.priority, c.version, s.version AS newest_version,
       CASE WHEN c.version >= s.version THEN 0::double precision
            ELSE greatest(0, extract(epoch FROM now() - greatest(r.created_at,
                   coalesce((SELECT min(v.created_at) FROM snapshot_versions v
                             WHERE v.snapshot_id = r.snapshot_id
                               AND v.version > coalesce(c.version, 0)), r.created_at))))
       END AS lag_s,
       CASE WHEN c.version >= s.version THEN 0::bigint
            WHEN c.id IS NULL THEN coalesce(nv.size_bytes, s.size_bytes)
            ELSE least(coalesce(nv.size_bytes, s.size_bytes),
                       (SELECT sum(coalesce(v.changed_bytes, v.size_bytes))::bigint
                        FROM snapshot_versions v
                        WHERE v.snapshot_id = r.snapshot_id AND v.version > c.version))
       END AS bytes_behind,
       CASE WHEN r.reason = 'protection' THEN pp.rpo_s END AS rpo_s,
       r.rpo_breached_at, c.created_at AS copied_at, r.reason, r.trip_id, r.ends_at
FROM replicas r
JOIN snapshots s ON s.id = r.snapshot_id
JOIN protection_policies pp ON pp.level = s.priority
LEFT JOIN placements c ON c.id = r.placement_id
LEFT JOIN snapshot_versions nv ON nv.snapshot_id = s.id AND nv.version = s.version;
