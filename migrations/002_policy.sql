-- The decision policy's state, kept beside its effects so that a restarted
-- or rebalanced scheduler decides exactly as the one before it would have.

-- Residency: a snapshot may be restricted to datacenters inside these zones
-- (any of them); empty means anywhere.
ALTER TABLE snapshots ADD COLUMN allowed_zones text[] NOT NULL DEFAULT '{}';

-- Bytes promised to transfers in flight towards a datacenter.
ALTER TABLE datacenters ADD COLUMN reserved_bytes bigint NOT NULL DEFAULT 0
    CHECK (reserved_bytes >= 0);

-- Per snapshot: the place its user seems to be settling at (dwell), when it
-- last moved (cooldown), and the latest decision in brief.
CREATE TABLE snapshot_policy_state (
    snapshot_id        text PRIMARY KEY REFERENCES snapshots (id) ON DELETE CASCADE,
    candidate_dc       text,
    candidate_since    timestamptz,
    candidate_reports  integer NOT NULL DEFAULT 0,
    last_move_at       timestamptz,
    window_start       timestamptz,
    window_moves       integer NOT NULL DEFAULT 0,
    last_outcome       text,
    last_reason        text,
    last_decided_at    timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- Decisions: what moved and, when the reason changes, what stayed and why,
-- with the numbers behind it.
ALTER TABLE decisions ADD COLUMN details jsonb NOT NULL DEFAULT '{}';

-- Reports the scheduler dropped as not credible, by reason (counted, not kept).
CREATE TABLE dropped_reports (
    reason text PRIMARY KEY,
    count  bigint NOT NULL DEFAULT 0
);

-- A transfer finished: the snapshot (and the template, if it had to be
-- copied) is at the target. In one transaction the target gets the template
-- replica, the old placement is deactivated and only then the new one
-- activated (the partial unique index forbids two active copies), and the
-- bytes move from reserved to used. Returns false when the transfer was not
-- queued or running (already finished or cancelled): nothing changes.
CREATE FUNCTION homing_transfer_succeeded(p_transfer bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    t transfers%ROWTYPE;
    s snapshots%ROWTYPE;
BEGIN
    SELECT * INTO t FROM transfers WHERE id = p_transfer FOR UPDATE;
    IF NOT FOUND OR t.state NOT IN ('queued', 'running') THEN
        RETURN false;
    END IF;
    SELECT * INTO s FROM snapshots WHERE id = t.snapshot_id;

    UPDATE transfers SET state = 'succeeded', bytes_done = bytes_total, updated_at = now()
    WHERE id = t.id;
    IF NOT t.template_present THEN
        INSERT INTO template_replicas (template_id, datacenter_id)
        VALUES (t.template_id, t.to_dc) ON CONFLICT DO NOTHING;
    END IF;
    UPDATE placements SET active = false, deactivated_at = now()
    WHERE snapshot_id = t.snapshot_id AND active;
    INSERT INTO placements (snapshot_id, datacenter_id, version, active)
    VALUES (t.snapshot_id, t.to_dc, s.version, true);

    UPDATE datacenters
    SET reserved_bytes = greatest(reserved_bytes - t.bytes_total, 0),
        used_bytes = used_bytes + t.bytes_total, updated_at = now()
    WHERE id = t.to_dc;
    UPDATE datacenters SET used_bytes = greatest(used_bytes - s.size_bytes, 0), updated_at = now()
    WHERE id = t.from_dc;
    RETURN true;
END $$;

-- A transfer ended without moving anything (p_state 'failed' or
-- 'cancelled'): the bytes it had reserved at the target are released.
-- Returns false when it was not queued or running: nothing changes.
CREATE FUNCTION homing_transfer_ended(p_transfer bigint, p_state text, p_error text)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    t transfers%ROWTYPE;
BEGIN
    IF p_state NOT IN ('failed', 'cancelled') THEN
        RAISE EXCEPTION 'a transfer ends failed or cancelled, not %', p_state;
    END IF;
    SELECT * INTO t FROM transfers WHERE id = p_transfer FOR UPDATE;
    IF NOT FOUND OR t.state NOT IN ('queued', 'running') THEN
        RETURN false;
    END IF;
    UPDATE transfers SET state = p_state, error = p_error, updated_at = now() WHERE id = t.id;
    UPDATE datacenters SET reserved_bytes = greatest(reserved_bytes - t.bytes_total, 0),
                           updated_at = now()
    WHERE id = t.to_dc;
    RETURN true;
END $$;
