-- Cached copies (inactive placements whose files are still in a store) are
-- what makes the next transfer small; they go when they are old or when the
-- datacenter needs the room. homing_cache_bytes says what they hold;
-- homing_cache_evict picks, marks and returns the ones to delete.

-- Bytes of the cached copies at a datacenter (their versions' registered sizes).
CREATE FUNCTION homing_cache_bytes(p_dc text) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(v.size_bytes), 0)::bigint
    FROM placements p
    JOIN snapshot_versions v ON v.snapshot_id = p.snapshot_id AND v.version = p.version
    WHERE p.datacenter_id = p_dc AND NOT p.active AND p.evicted_at IS NULL
$$;

-- Marks evicted, and returns, the cached copies at p_dc that are older than
-- p_max_age_s, and then the oldest others for as long as used + reserved +
-- cached bytes exceed p_high_water of the capacity. A copy that a transfer
-- into p_dc may be building from (its snapshot has one queued or running
-- there) is kept.
CREATE FUNCTION homing_cache_evict(p_dc text, p_max_age_s bigint, p_high_water double precision)
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
                          AND t.to_dc = p_dc AND t.state IN ('queued', 'running'))),
    ranked AS (
        -- The newest copies are the ones worth keeping: room goes to them first.
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
