-- Priority levels and warm replicas. A snapshot's priority level (1 most
-- urgent to 5, migration 012) is also its transfers' level, and names a
-- protection policy: how many warm replicas its snapshots keep and how
-- stale one may become (the RPO). A replica is an inactive, verified copy at
-- another datacenter that homing keeps current with `replicate` transfers
-- and never evicts while it is designated; it counts against its
-- datacenter's capacity. See scheduler/README.md, "Replicas".

-- A transfer copies the priority level at the time it is queued; a level
-- changed since reaches the transfers still open, so that the queue and the
-- snapshot never disagree.
CREATE FUNCTION homing_priority_follows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE transfers SET priority = NEW.priority, updated_at = now()
    WHERE snapshot_id = NEW.id AND state IN ('queued', 'running')
      AND priority <> NEW.priority;
    RETURN NULL;
END $$;
CREATE TRIGGER snapshots_priority_follows AFTER UPDATE OF priority ON snapshots
    FOR EACH ROW WHEN (OLD.priority IS DISTINCT FROM NEW.priority)
    EXECUTE FUNCTION homing_priority_follows();

-- What a priority level protects: how many warm replicas its snapshots keep
-- (0: none) and how stale one may become, in seconds (its RPO; NULL without
-- replicas). Operators change it (PUT /v1/protection-policies/{level}).
-- Defaults: the urgent levels keep a replica a minute or five behind, the
-- ordinary level 3 one an hour behind, 4 and 5 none (README, "Priority
-- levels and warm replicas").
CREATE TABLE protection_policies (
    level       integer PRIMARY KEY CHECK (level BETWEEN 1 AND 5),
    replicas    integer NOT NULL CHECK (replicas BETWEEN 0 AND 3),
    rpo_s       integer CHECK (rpo_s BETWEEN 10 AND 2592000),
    row_version bigint NOT NULL DEFAULT 1,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((replicas = 0) = (rpo_s IS NULL))
);
INSERT INTO protection_policies (level, replicas, rpo_s) VALUES
    (1, 1, 60), (2, 1, 300), (3, 1, 3600), (4, 0, NULL), (5, 0, NULL);
CREATE TRIGGER protection_policies_row_version BEFORE UPDATE ON protection_policies
    FOR EACH ROW EXECUTE FUNCTION homing_bump_row_version();

-- Datacenters that fail together (one power grid, one flood plain, a
-- provider's region pair) share a failure domain; a replica lives outside
-- its active site's. NULL: a domain of its own.
ALTER TABLE datacenters ADD COLUMN failure_domain text
    CHECK (failure_domain ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$');

-- A transfer moves the snapshot (its active placement follows it), or
-- replicates it: makes or refreshes a copy at the target and leaves the
-- active placement where it is. One move open per snapshot, as before; at
-- most one replicate open per snapshot and target.
ALTER TABLE transfers ADD COLUMN kind text NOT NULL DEFAULT 'move'
    CHECK (kind IN ('move', 'replicate'));
DROP INDEX transfers_one_open;
CREATE UNIQUE INDEX transfers_one_open ON transfers (snapshot_id)
    WHERE kind = 'move' AND state IN ('queued', 'running');
CREATE UNIQUE INDEX transfers_one_open_replicate ON transfers (snapshot_id, to_dc)
    WHERE kind = 'replicate' AND state IN ('queued', 'running');

-- The designated replicas: where the scheduler wants a warm copy of the
-- snapshot kept (scheduler/replicas.c chooses), and the verified copy there
-- that is the replica now (an inactive placement; NULL until the first
-- replicate transfer brought one). That copy is never evicted, and its
-- bytes count in its datacenter's used_bytes (`bytes`, kept by a trigger).
-- Dropping the designation makes the copy an ordinary cached one.
CREATE TABLE replicas (
    snapshot_id     text NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
    datacenter_id   text NOT NULL REFERENCES datacenters (id) ON DELETE CASCADE,
    placement_id    bigint REFERENCES placements (id) ON DELETE SET NULL,
    bytes           bigint NOT NULL DEFAULT 0 CHECK (bytes >= 0),
    rpo_breached_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (snapshot_id, datacenter_id)
);
CREATE INDEX replicas_by_datacenter ON replicas (datacenter_id);
CREATE UNIQUE INDEX replicas_by_placement ON replicas (placement_id);

-- A replica's bytes are its copy's version's size; they move in and out of
-- its datacenter's used_bytes with every change of the row.
CREATE FUNCTION homing_replica_bytes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN
        SELECT coalesce(v.size_bytes, s.size_bytes) INTO NEW.bytes
        FROM placements p JOIN snapshots s ON s.id = p.snapshot_id
        LEFT JOIN snapshot_versions v ON v.snapshot_id = p.snapshot_id AND v.version = p.version
        WHERE p.id = NEW.placement_id;
        NEW.bytes := coalesce(NEW.bytes, 0);
    END IF;
    IF TG_OP <> 'INSERT' AND OLD.bytes > 0 THEN
        UPDATE datacenters SET used_bytes = greatest(used_bytes - OLD.bytes, 0),
                               updated_at = now()
        WHERE id = OLD.datacenter_id;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.bytes > 0 THEN
        UPDATE datacenters SET used_bytes = used_bytes + NEW.bytes, updated_at = now()
        WHERE id = NEW.datacenter_id;
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;
CREATE TRIGGER replicas_bytes BEFORE INSERT OR UPDATE OF placement_id OR DELETE ON replicas
    FOR EACH ROW EXECUTE FUNCTION homing_replica_bytes();

-- Cached bytes, as in 014, without the replicas' copies (counted as used).
CREATE OR REPLACE FUNCTION homing_cache_bytes(p_dc text) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(v.size_bytes), 0)::bigint
    FROM placements p
    JOIN snapshot_versions v ON v.snapshot_id = p.snapshot_id AND v.version = p.version
    WHERE p.datacenter_id = p_dc AND NOT p.active AND p.evicted_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM replicas r WHERE r.placement_id = p.id)
$$;

-- Eviction as in 014, and two more copies are kept: a designated
-- replica's, and one that an open transfer out of p_dc is sending (a
-- replicate may run while newer versions are registered at its source).
CREATE OR REPLACE FUNCTION homing_cache_evict(p_dc text, p_max_age_s bigint,
                                              p_high_water double precision)
RETURNS TABLE (placement_id bigint, snapshot_id text, version bigint, size_bytes bigint)
LANGUAGE plpgsql AS $$
DECLARE
    room double precision;
BEGIN
    SELECT d.capacity_bytes * p_high_water - d.used_bytes - d.reserved_bytes INTO room
    FROM datacenters d WHERE d.id = p_dc FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH cached AS (
        SELECT p.id, p.snapshot_id, p.version, coalesce(v.size_bytes, 0) AS size,
               coalesce(p.deactivated_at, p.created_at) AS since
        FROM placements p
        LEFT JOIN snapshot_versions v ON v.snapshot_id = p.snapshot_id AND v.version = p.version
        WHERE p.datacenter_id = p_dc AND NOT p.active AND p.evicted_at IS NULL
          AND NOT EXISTS (SELECT 1 FROM transfers t WHERE t.snapshot_id = p.snapshot_id
                          AND t.to_dc = p_dc AND t.state IN ('queued', 'running'))
          AND NOT EXISTS (SELECT 1 FROM transfers t WHERE t.snapshot_id = p.snapshot_id
                          AND t.from_dc = p_dc AND t.version = p.version
                          AND t.state IN ('queued', 'running'))
          AND NOT EXISTS (SELECT 1 FROM replicas r WHERE r.placement_id = p.id)),
    ranked AS (
        SELECT c.*, sum(c.size) OVER (ORDER BY c.since DESC, c.id DESC) AS kept_if_this
        FROM cached c),
    chosen AS (
        SELECT r.id FROM ranked r
        WHERE r.since < now() - make_interval(secs => p_max_age_s) OR r.kept_if_this > room),
    marked AS (
        UPDATE placements p SET evicted_at = now()
        FROM chosen WHERE p.id = chosen.id
        RETURNING p.id, p.snapshot_id, p.version)
    SELECT m.id, m.snapshot_id, m.version, coalesce(v.size_bytes, 0)::bigint
    FROM marked m
    LEFT JOIN snapshot_versions v ON v.snapshot_id = m.snapshot_id AND v.version = m.version
    ORDER BY m.id;
END $$;

-- A transfer finished, as in 016, by its kind. A replicate adds a verified
-- inactive copy at the target and makes it the replica's copy there (when
-- the target is still a designated replica; else it stays a cached copy);
-- the active placement does not move. A move ends the target's designation
-- as a replica: the active site is no replica of itself.
CREATE OR REPLACE FUNCTION homing_transfer_succeeded(p_transfer bigint,
                                                     p_content_sha256 text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    t transfers%ROWTYPE;
    s snapshots%ROWTYPE;
    registered text;
    old_dc text;
    copy bigint;
BEGIN
    SELECT * INTO t FROM transfers WHERE id = p_transfer FOR UPDATE;
    IF NOT FOUND OR t.state NOT IN ('queued', 'running') THEN
        RETURN false;
    END IF;
    SELECT * INTO s FROM snapshots WHERE id = t.snapshot_id;
    SELECT v.content_sha256 INTO registered FROM snapshot_versions v
    WHERE v.snapshot_id = t.snapshot_id AND v.version = coalesce(t.version, s.version);
    IF p_content_sha256 IS NOT NULL AND registered IS NOT NULL
       AND p_content_sha256 <> registered THEN
        RAISE EXCEPTION 'transfer %: the copy''s digest % is not version %''s %', t.id,
            p_content_sha256, coalesce(t.version, s.version), registered
            USING ERRCODE = 'data_exception';
    END IF;

    UPDATE transfers
    SET state = 'succeeded', bytes_done = bytes_total, lease_expires_at = NULL,
        finished_at = now(), updated_at = now()
    WHERE id = t.id;
    IF NOT t.template_present THEN
        INSERT INTO template_replicas (template_id, datacenter_id)
        VALUES (t.template_id, t.to_dc) ON CONFLICT DO NOTHING;
    END IF;
    UPDATE datacenters SET reserved_bytes = greatest(reserved_bytes - t.bytes_total, 0),
                           updated_at = now()
    WHERE id = t.to_dc;

    SELECT datacenter_id INTO old_dc FROM placements WHERE snapshot_id = t.snapshot_id AND active;
    IF old_dc IS NOT DISTINCT FROM t.to_dc THEN
        RETURN true;
    END IF;
    IF t.kind = 'replicate' THEN
        INSERT INTO placements (snapshot_id, datacenter_id, version, active, content_sha256)
        VALUES (t.snapshot_id, t.to_dc, coalesce(t.version, s.version), false,
                coalesce(p_content_sha256, registered))
        RETURNING id INTO copy;
        UPDATE replicas SET placement_id = copy, rpo_breached_at = NULL, updated_at = now()
        WHERE snapshot_id = t.snapshot_id AND datacenter_id = t.to_dc;
        RETURN true;
    END IF;
    DELETE FROM replicas WHERE snapshot_id = t.snapshot_id AND datacenter_id = t.to_dc;
    UPDATE placements SET active = false, deactivated_at = now()
    WHERE snapshot_id = t.snapshot_id AND active;
    INSERT INTO placements (snapshot_id, datacenter_id, version, active, content_sha256)
    VALUES (t.snapshot_id, t.to_dc, coalesce(t.version, s.version), true,
            coalesce(p_content_sha256, registered));
    UPDATE datacenters SET used_bytes = used_bytes + t.bytes_total, updated_at = now()
    WHERE id = t.to_dc;
    UPDATE datacenters SET used_bytes = greatest(used_bytes - s.size_bytes, 0), updated_at = now()
    WHERE id = old_dc;
    RETURN true;
END $$;

-- What a version changed since the one before it: the bytes of the blocks
-- that differ (reported by `homing snapshot register` when it holds the
-- previous version's manifest; NULL: unknown). A replica behind by some
-- versions lacks at most their sum.
ALTER TABLE snapshot_versions ADD COLUMN changed_bytes bigint CHECK (changed_bytes >= 0);

-- Each replica's lag behind its snapshot's newest version: in seconds
-- (since the first version it lacks was registered, or since it was
-- designated when that is later; 0 when current) and in bytes (what it
-- lacks: the sum of the newer versions' changed bytes where known, never
-- more than the newest version's size, which is what a missing copy
-- lacks), with the RPO of the snapshot's level.
CREATE VIEW replica_lag AS
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
       pp.rpo_s, r.rpo_breached_at, c.created_at AS copied_at
FROM replicas r
JOIN snapshots s ON s.id = r.snapshot_id
JOIN protection_policies pp ON pp.level = s.priority
LEFT JOIN placements c ON c.id = r.placement_id
LEFT JOIN snapshot_versions nv ON nv.snapshot_id = s.id AND nv.version = s.version;
