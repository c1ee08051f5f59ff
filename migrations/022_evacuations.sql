-- Planned evacuation of a datacenter. A plan names, for every snapshot
-- active there, its target (its replica's site, else the nearest eligible
-- datacenter to its user), its priority level and the bytes to send, or why
-- it cannot move; a dry run stores the plan and changes nothing else.
-- Executing it switches each VM over, level by level: a bulk copy (an
-- `evacuate` transfer) while the VM runs at the source, then the source
-- powers it off (GET /v1/agent/vms leaves it out there), a final `move`
-- sends the last delta and flips the placement (the epoch advances), and
-- the target powers it on. One scheduler runs the steps
-- (homing_evacuation_step, below). See scheduler/README.md, "Evacuations".

-- A bulk copy for an evacuation: like a replicate, it leaves a verified
-- inactive copy at the target and the active placement where it is; unlike
-- one, no replica pass cancels it for its target being no replica.
ALTER TABLE transfers DROP CONSTRAINT transfers_kind_check;
ALTER TABLE transfers ADD CONSTRAINT transfers_kind_check
    CHECK (kind IN ('move', 'replicate', 'evacuate'));
CREATE UNIQUE INDEX transfers_one_open_evacuate ON transfers (snapshot_id)
    WHERE kind = 'evacuate' AND state IN ('queued', 'running');

CREATE TABLE evacuations (
    id            bigserial PRIMARY KEY,
    datacenter_id text NOT NULL REFERENCES datacenters (id) ON DELETE CASCADE,
    state         text NOT NULL CHECK (state IN ('planned', 'running', 'done', 'cancelled')),
    -- When the next priority level starts: once the previous one is done, or
    -- once its transfers are all under way.
    gate          text NOT NULL DEFAULT 'done' CHECK (gate IN ('done', 'running')),
    dry_run       boolean NOT NULL,
    levels_done   integer[] NOT NULL DEFAULT '{}',
    created_by    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    row_version   bigint NOT NULL DEFAULT 1
);
-- One evacuation runs per datacenter at a time.
CREATE UNIQUE INDEX evacuations_one_running ON evacuations (datacenter_id)
    WHERE state = 'running';
CREATE TRIGGER evacuations_row_version BEFORE UPDATE ON evacuations
    FOR EACH ROW EXECUTE FUNCTION homing_bump_row_version();

-- One snapshot of a plan, and how far its switchover came:
-- pending -> copying (the bulk copy) -> stopping (the source powers it off)
-- -> switching (the final delta) -> powering (the target powers it on) ->
-- done; or blocked (no target: blocked_reason), failed (error), skipped
-- (it left the source by other means), cancelled.
CREATE TABLE evacuation_items (
    evacuation_id  bigint NOT NULL REFERENCES evacuations (id) ON DELETE CASCADE,
    snapshot_id    text NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
    priority       integer NOT NULL CHECK (priority BETWEEN 1 AND 5),
    target_dc      text REFERENCES datacenters (id) ON DELETE SET NULL,
    target_kind    text CHECK (target_kind IN ('replica', 'nearest')),
    blocked_reason text CHECK (blocked_reason IN ('capacity', 'zones', 'no-eligible-site')),
    version        bigint NOT NULL,
    -- What the plan expects to send: the delta from the newest copy the
    -- target holds (`delta`), else the whole version and its template.
    bytes_planned  bigint NOT NULL DEFAULT 0 CHECK (bytes_planned >= 0),
    delta          boolean NOT NULL DEFAULT false,
    distance_m     double precision,
    state          text NOT NULL DEFAULT 'pending'
                   CHECK (state IN ('pending', 'copying', 'stopping', 'switching', 'powering',
                                    'done', 'blocked', 'failed', 'skipped', 'cancelled')),
    bulk_transfer  bigint REFERENCES transfers (id) ON DELETE SET NULL,
    final_transfer bigint REFERENCES transfers (id) ON DELETE SET NULL,
    -- Bytes this item holds reserved at its target between its bulk copy
    -- and its final move (each transfer reserves its own while open).
    held_bytes     bigint NOT NULL DEFAULT 0 CHECK (held_bytes >= 0),
    error          text,
    started_at     timestamptz,
    switched_at    timestamptz,
    finished_at    timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (evacuation_id, snapshot_id),
    CHECK ((state = 'blocked') = (blocked_reason IS NOT NULL)),
    CHECK (state = 'blocked' OR target_dc IS NOT NULL OR state IN ('skipped', 'cancelled'))
);
CREATE INDEX evacuation_items_open ON evacuation_items (snapshot_id)
    WHERE state IN ('pending', 'copying', 'stopping', 'switching', 'powering');

-- Whether an item's state is final.
CREATE FUNCTION homing_evacuation_item_ended(p_state text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_state IN ('done', 'blocked', 'failed', 'skipped', 'cancelled')
$$;

-- The plan's bytes, from the copies its targets hold now: the delta from
-- the newest verified copy at the target (the newer versions' changed
-- bytes, at most the version's size), else the version and, where the
-- target lacks it, its template.
CREATE FUNCTION homing_evacuation_price(p_evacuation bigint) RETURNS void
LANGUAGE sql AS $$
    UPDATE evacuation_items i
    SET (bytes_planned, delta) = (
        SELECT CASE
                WHEN c.version IS NULL THEN s.size_bytes + CASE WHEN EXISTS (
                    SELECT 1 FROM template_replicas tr WHERE tr.template_id = s.template_id
                      AND tr.datacenter_id = i.target_dc) THEN 0 ELSE tpl.size_bytes END
                WHEN c.version >= i.version THEN 0
                ELSE least(s.size_bytes, coalesce((
                    SELECT sum(coalesce(v.changed_bytes, v.size_bytes))
                    FROM snapshot_versions v WHERE v.snapshot_id = i.snapshot_id
                      AND v.version > c.version AND v.version <= i.version), 0))::bigint
            END, c.version IS NOT NULL
        FROM snapshots s
        JOIN templates tpl ON tpl.id = s.template_id
        CROSS JOIN LATERAL (SELECT max(p.version) AS version FROM placements p
                            WHERE p.snapshot_id = s.id AND p.datacenter_id = i.target_dc
                              AND NOT p.active AND p.evicted_at IS NULL) c
        WHERE s.id = i.snapshot_id)
    WHERE i.evacuation_id = p_evacuation AND i.target_dc IS NOT NULL
$$;

-- Per priority level: the snapshots, how many are done, blocked, failed,
-- still open, the bytes planned and sent (on the wire, both transfers), the
-- errors.
CREATE VIEW evacuation_levels AS
SELECT i.evacuation_id, i.priority AS level, count(*) AS snapshots,
       count(*) FILTER (WHERE i.state = 'done') AS done,
       count(*) FILTER (WHERE i.state = 'blocked') AS blocked,
       count(*) FILTER (WHERE i.state = 'failed') AS failed,
       count(*) FILTER (WHERE i.state = 'skipped') AS skipped,
       count(*) FILTER (WHERE i.state = 'cancelled') AS cancelled,
       count(*) FILTER (WHERE NOT homing_evacuation_item_ended(i.state)) AS open,
       coalesce(sum(i.bytes_planned), 0)::bigint AS bytes_planned,
       coalesce(sum(coalesce(b.bytes_sent, 0) + coalesce(f.bytes_sent, 0)), 0)::bigint AS bytes_sent,
       coalesce(sum(coalesce(f.bytes_sent, 0)), 0)::bigint AS bytes_sent_at_switchover,
       coalesce(json_agg(json_build_object('snapshot_id', i.snapshot_id, 'error', i.error)
                ORDER BY i.snapshot_id) FILTER (WHERE i.error IS NOT NULL), '[]') AS errors
FROM evacuation_items i
LEFT JOIN transfers b ON b.id = i.bulk_transfer
LEFT JOIN transfers f ON f.id = i.final_transfer
GROUP BY i.evacuation_id, i.priority;

-- An evacuation as the API shows it: its levels' progress and, with
-- p_items, every item of its plan.
CREATE FUNCTION homing_evacuation_json(p_evacuation bigint, p_items boolean) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'id', e.id, 'datacenter_id', e.datacenter_id, 'state', e.state, 'gate', e.gate,
        'dry_run', e.dry_run, 'created_by', e.created_by,
        'created_at', homing_time(e.created_at), 'started_at', homing_time(e.started_at),
        'finished_at', homing_time(e.finished_at),
        'snapshots', (SELECT count(*) FROM evacuation_items i WHERE i.evacuation_id = e.id),
        'levels', coalesce((SELECT json_agg(json_build_object(
            'level', l.level, 'snapshots', l.snapshots, 'done', l.done, 'blocked', l.blocked,
            'failed', l.failed, 'skipped', l.skipped, 'cancelled', l.cancelled, 'open', l.open,
            'state', CASE WHEN l.level = ANY (e.levels_done) THEN 'done'
                          WHEN l.open < l.snapshots AND e.state = 'running' THEN 'running'
                          ELSE 'waiting' END,
            'bytes_planned', l.bytes_planned, 'bytes_sent', l.bytes_sent,
            'bytes_sent_at_switchover', l.bytes_sent_at_switchover, 'errors', l.errors)
            ORDER BY l.level) FROM evacuation_levels l WHERE l.evacuation_id = e.id), '[]'),
        'items', CASE WHEN p_items THEN coalesce((SELECT json_agg(json_build_object(
            'snapshot_id', i.snapshot_id, 'priority', i.priority, 'target_dc', i.target_dc,
            'target_kind', i.target_kind, 'blocked_reason', i.blocked_reason,
            'version', i.version, 'bytes_planned', i.bytes_planned, 'delta', i.delta,
            'distance_m', round(i.distance_m::numeric, 3), 'state', i.state,
            'bulk_transfer_id', i.bulk_transfer, 'final_transfer_id', i.final_transfer,
            'error', i.error, 'switched_at', homing_time(i.switched_at),
            'finished_at', homing_time(i.finished_at))
            ORDER BY i.priority, i.snapshot_id)
            FROM evacuation_items i WHERE i.evacuation_id = e.id), '[]') END)
    FROM evacuations e WHERE e.id = p_evacuation
$$;

-- Ends what an evacuation has open: its items not yet switched are
-- cancelled with their transfers (a VM the source powered off runs there
-- again, since GET /v1/agent/vms lists it once more); items whose placement
-- flipped stay at their target and finish powering on by themselves.
CREATE FUNCTION homing_evacuation_cancel(p_evacuation bigint, p_why text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    i evacuation_items%ROWTYPE;
    n integer := 0;
BEGIN
    FOR i IN SELECT * FROM evacuation_items
             WHERE evacuation_id = p_evacuation AND NOT homing_evacuation_item_ended(state)
             ORDER BY snapshot_id FOR UPDATE LOOP
        IF i.state = 'powering' THEN
            CONTINUE;
        END IF;
        PERFORM homing_transfer_ended(i.bulk_transfer, 'cancelled', p_why);
        PERFORM homing_transfer_ended(i.final_transfer, 'cancelled', p_why);
        UPDATE datacenters SET reserved_bytes = greatest(reserved_bytes - i.held_bytes, 0),
                               updated_at = now()
        WHERE id = i.target_dc AND i.held_bytes > 0;
        UPDATE evacuation_items SET state = 'cancelled', held_bytes = 0, finished_at = now(),
                                    updated_at = now()
        WHERE evacuation_id = i.evacuation_id AND snapshot_id = i.snapshot_id;
        n := n + 1;
    END LOOP;
    UPDATE evacuations SET state = 'cancelled', finished_at = now(), updated_at = now()
    WHERE id = p_evacuation AND state IN ('planned', 'running');
    RETURN n;
END $$;

-- A transfer job on the transfers topic, as the scheduler writes them.
CREATE FUNCTION homing_evacuation_job(p_topic text, p_transfer bigint) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO outbox (topic, key, payload)
    SELECT p_topic, t.snapshot_id, jsonb_build_object(
        'transfer_id', t.id, 'kind', t.kind, 'snapshot_id', t.snapshot_id,
        'from_dc', t.from_dc, 'to_dc', t.to_dc, 'template_id', t.template_id,
        'template_present', t.template_present, 'priority', t.priority,
        'reason', t.reason, 'bytes_total', t.bytes_total, 'version', t.version,
        'idempotency_key', t.idempotency_key)
    FROM transfers t WHERE t.id = p_transfer
$$;

-- One step of every running evacuation: each item goes as far as it can,
-- the levels whose gate opened start theirs where the target has room, and
-- finished levels and evacuations say so. Safe to run again at any time (a
-- scheduler killed mid-step rolls back); the caller holds the evacuation
-- lock (scheduler/evacuate.c). Returns how many items changed state.
CREATE FUNCTION homing_evacuation_step(p_transfers_topic text, p_audit_topic text)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    e evacuations%ROWTYPE;
    i record;
    t transfers%ROWTYPE;
    need bigint;
    room bigint;
    tid bigint;
    copy_sha text;
    lvl record;
    n integer := 0;
BEGIN
    FOR e IN SELECT * FROM evacuations WHERE state = 'running' ORDER BY id FOR UPDATE LOOP
        FOR i IN SELECT it.*, s.power, s.epoch, s.version AS newest, s.size_bytes,
                        s.template_id, tpl.size_bytes AS template_bytes,
                        (SELECT p.datacenter_id FROM placements p
                         WHERE p.snapshot_id = it.snapshot_id AND p.active) AS active_dc
                 FROM evacuation_items it
                 JOIN snapshots s ON s.id = it.snapshot_id
                 JOIN templates tpl ON tpl.id = s.template_id
                 WHERE it.evacuation_id = e.id
                   AND it.state IN ('copying', 'stopping', 'switching', 'powering')
                 ORDER BY it.priority, it.snapshot_id FOR UPDATE OF it LOOP
            -- It left the source by other means (a move of the user's, an operator's).
            IF i.state IN ('copying', 'stopping') AND i.active_dc IS DISTINCT FROM e.datacenter_id
            THEN
                PERFORM homing_transfer_ended(i.bulk_transfer, 'cancelled',
                                              'the snapshot left ' || e.datacenter_id);
                UPDATE datacenters SET reserved_bytes = greatest(reserved_bytes - i.held_bytes, 0)
                WHERE id = i.target_dc AND i.held_bytes > 0;
                UPDATE evacuation_items SET state = 'skipped', held_bytes = 0,
                    error = 'active at ' || coalesce(i.active_dc, 'no datacenter') || ' now',
                    finished_at = now(), updated_at = now()
                WHERE evacuation_id = e.id AND snapshot_id = i.snapshot_id;
                n := n + 1;
                CONTINUE;
            END IF;
            IF i.state = 'copying' THEN
                SELECT * INTO t FROM transfers WHERE id = i.bulk_transfer;
                IF t.state = 'succeeded' THEN
                    -- Hold the room the final move will need until it is queued.
                    need := i.size_bytes;
                    UPDATE datacenters SET reserved_bytes = reserved_bytes + need,
                                           updated_at = now()
                    WHERE id = i.target_dc;
                    UPDATE evacuation_items SET state = 'stopping', held_bytes = need,
                                                updated_at = now()
                    WHERE evacuation_id = e.id AND snapshot_id = i.snapshot_id;
                    i.state := 'stopping';
                    i.held_bytes := need;
                    n := n + 1;
                ELSIF t.state IN ('failed', 'cancelled') OR t.id IS NULL THEN
                    UPDATE evacuation_items SET state = 'failed',
                        error = 'bulk copy ' || coalesce(t.state, 'gone') || ': '
                                || coalesce(t.error, 'no reason given'),
                        finished_at = now(), updated_at = now()
                    WHERE evacuation_id = e.id AND snapshot_id = i.snapshot_id;
                    n := n + 1;
                    CONTINUE;
                END IF;
            END IF;
            -- The source is left out of GET /v1/agent/vms from here on; once
            -- its records no longer say the VM runs there, the final delta goes.
            IF i.state = 'stopping' AND (i.power = 'off' OR NOT EXISTS (
                    SELECT 1 FROM (SELECT r.state FROM power_records r
                                   WHERE r.snapshot_id = i.snapshot_id
                                     AND r.datacenter_id = e.datacenter_id
                                   ORDER BY r.id DESC LIMIT 1) l
                    WHERE l.state = 'powered_on')) THEN
                -- An evacuation goes before a move of the user's still queued.
                PERFORM homing_transfer_ended(o.id, 'cancelled',
                                              'superseded by evacuation ' || e.id)
                FROM transfers o WHERE o.snapshot_id = i.snapshot_id AND o.kind = 'move'
                  AND o.state IN ('queued', 'running');
                need := i.size_bytes + CASE WHEN EXISTS (
                    SELECT 1 FROM template_replicas tr WHERE tr.template_id = i.template_id
                      AND tr.datacenter_id = i.target_dc) THEN 0 ELSE i.template_bytes END;
                INSERT INTO transfers (snapshot_id, from_dc, to_dc, template_id, template_present,
                                       priority, reason, idempotency_key, bytes_total, kind,
                                       version)
                VALUES (i.snapshot_id, e.datacenter_id, i.target_dc, i.template_id,
                        need = i.size_bytes, i.priority, 'evacuation',
                        'evacuation/' || e.id || '/' || i.snapshot_id || '/final/'
                          || (extract(epoch FROM clock_timestamp()) * 1000000)::bigint,
                        need, 'move', i.newest)
                ON CONFLICT DO NOTHING RETURNING id INTO tid;
                IF tid IS NOT NULL THEN
                    UPDATE datacenters
                    SET reserved_bytes = greatest(reserved_bytes - i.held_bytes, 0) + need,
                        updated_at = now()
                    WHERE id = i.target_dc;
                    -- A verified copy of that very version there (the replica, or
                    -- the bulk copy, with no version since): the final delta is
                    -- empty, the placement flips now. Else an agent sends it.
                    SELECT p.content_sha256 INTO copy_sha FROM placements p
                    JOIN snapshot_versions v ON v.snapshot_id = p.snapshot_id
                      AND v.version = p.version AND v.content_sha256 = p.content_sha256
                    WHERE p.snapshot_id = i.snapshot_id AND p.datacenter_id = i.target_dc
                      AND NOT p.active AND p.evicted_at IS NULL AND p.version = i.newest
                    LIMIT 1;
                    IF copy_sha IS NOT NULL THEN
                        PERFORM homing_transfer_succeeded(tid, copy_sha);
                    ELSE
                        PERFORM homing_evacuation_job(p_transfers_topic, tid);
                    END IF;
                    UPDATE evacuation_items SET state = 'switching', final_transfer = tid,
                                                held_bytes = 0, updated_at = now()
                    WHERE evacuation_id = e.id AND snapshot_id = i.snapshot_id;
                    n := n + 1;
                END IF;
                CONTINUE;
            END IF;
            IF i.state = 'switching' THEN
                SELECT * INTO t FROM transfers WHERE id = i.final_transfer;
                IF t.state = 'succeeded' THEN
                    UPDATE evacuation_items
                    SET state = CASE WHEN i.power = 'on' THEN 'powering' ELSE 'done' END,
                        switched_at = now(),
                        finished_at = CASE WHEN i.power = 'on' THEN NULL ELSE now() END,
                        updated_at = now()
                    WHERE evacuation_id = e.id AND snapshot_id = i.snapshot_id;
                    n := n + 1;
                ELSIF t.state IN ('failed', 'cancelled') OR t.id IS NULL THEN
                    -- The VM runs at the source again: it is still active there.
                    UPDATE evacuation_items SET state = 'failed',
                        error = 'final delta ' || coalesce(t.state, 'gone') || ': '
                                || coalesce(t.error, 'no reason given'),
                        finished_at = now(), updated_at = now()
                    WHERE evacuation_id = e.id AND snapshot_id = i.snapshot_id;
                    n := n + 1;
                END IF;
                CONTINUE;
            END IF;
            IF i.state = 'powering' AND (i.power = 'off' OR EXISTS (
                    SELECT 1 FROM (SELECT r.state, r.epoch FROM power_records r
                                   WHERE r.snapshot_id = i.snapshot_id
                                     AND r.datacenter_id = i.active_dc
                                   ORDER BY r.id DESC LIMIT 1) l
                    WHERE l.state = 'powered_on' AND l.epoch = i.epoch)) THEN
                UPDATE evacuation_items SET state = 'done', finished_at = now(), updated_at = now()
                WHERE evacuation_id = e.id AND snapshot_id = i.snapshot_id;
                n := n + 1;
            END IF;
        END LOOP;

        -- Start the pending items of the levels whose gate is open, most
        -- urgent first, each only where its target has room for it now.
        FOR i IN SELECT it.*, s.version AS newest, s.size_bytes, s.template_id,
                        tpl.size_bytes AS template_bytes,
                        (SELECT p.datacenter_id FROM placements p
                         WHERE p.snapshot_id = it.snapshot_id AND p.active) AS active_dc,
                        (SELECT max(p.version) FROM placements p
                         WHERE p.snapshot_id = it.snapshot_id AND p.datacenter_id = it.target_dc
                           AND NOT p.active AND p.evicted_at IS NULL) AS held_version
                 FROM evacuation_items it
                 JOIN snapshots s ON s.id = it.snapshot_id
                 JOIN templates tpl ON tpl.id = s.template_id
                 WHERE it.evacuation_id = e.id AND it.state = 'pending'
                   AND NOT EXISTS (SELECT 1 FROM evacuation_items b
                                   WHERE b.evacuation_id = e.id AND b.priority < it.priority
                                     AND CASE WHEN e.gate = 'done'
                                              THEN NOT homing_evacuation_item_ended(b.state)
                                              ELSE b.state = 'pending' END)
                 ORDER BY it.priority, it.snapshot_id FOR UPDATE OF it LOOP
            IF i.active_dc IS DISTINCT FROM e.datacenter_id THEN
                UPDATE evacuation_items SET state = 'skipped',
                    error = 'active at ' || coalesce(i.active_dc, 'no datacenter') || ' now',
                    finished_at = now(), updated_at = now()
                WHERE evacuation_id = e.id AND snapshot_id = i.snapshot_id;
                n := n + 1;
                CONTINUE;
            END IF;
            need := i.size_bytes + CASE WHEN EXISTS (
                SELECT 1 FROM template_replicas tr WHERE tr.template_id = i.template_id
                  AND tr.datacenter_id = i.target_dc) THEN 0 ELSE i.template_bytes END;
            SELECT d.capacity_bytes - d.used_bytes - d.reserved_bytes INTO room
            FROM datacenters d WHERE d.id = i.target_dc AND d.status = 'active' FOR UPDATE;
            IF room IS NULL OR room < need THEN
                CONTINUE; -- it waits for room (or for its target to be active again)
            END IF;
            IF i.held_version >= i.newest THEN
                -- The target holds the newest version already: no bulk copy.
                UPDATE datacenters SET reserved_bytes = reserved_bytes + i.size_bytes,
                                       updated_at = now()
                WHERE id = i.target_dc;
                UPDATE evacuation_items SET state = 'stopping', held_bytes = i.size_bytes,
                                            started_at = now(), updated_at = now()
                WHERE evacuation_id = e.id AND snapshot_id = i.snapshot_id;
                n := n + 1;
                CONTINUE;
            END IF;
            INSERT INTO transfers (snapshot_id, from_dc, to_dc, template_id, template_present,
                                   priority, reason, idempotency_key, bytes_total, kind, version)
            VALUES (i.snapshot_id, e.datacenter_id, i.target_dc, i.template_id,
                    need = i.size_bytes, i.priority, 'evacuation',
                    'evacuation/' || e.id || '/' || i.snapshot_id || '/bulk/'
                      || (extract(epoch FROM clock_timestamp()) * 1000000)::bigint,
                    need, 'evacuate', i.newest)
            ON CONFLICT DO NOTHING RETURNING id INTO tid;
            IF tid IS NULL THEN
                CONTINUE; -- a bulk copy of another evacuation is open: next step
            END IF;
            UPDATE datacenters SET reserved_bytes = reserved_bytes + need, updated_at = now()
            WHERE id = i.target_dc;
            PERFORM homing_evacuation_job(p_transfers_topic, tid);
            UPDATE evacuation_items SET state = 'copying', bulk_transfer = tid,
                                        started_at = now(), updated_at = now()
            WHERE evacuation_id = e.id AND snapshot_id = i.snapshot_id;
            n := n + 1;
        END LOOP;

        -- Levels that just ended, in order (a level ends once it and those
        -- before it have nothing open), each said once; then the evacuation.
        FOR lvl IN SELECT l.* FROM evacuation_levels l
                   WHERE l.evacuation_id = e.id AND NOT (l.level = ANY (e.levels_done))
                     AND NOT EXISTS (SELECT 1 FROM evacuation_items b
                                     WHERE b.evacuation_id = e.id AND b.priority <= l.level
                                       AND NOT homing_evacuation_item_ended(b.state))
                   ORDER BY l.level LOOP
            UPDATE evacuations SET levels_done = levels_done || lvl.level, updated_at = now()
            WHERE id = e.id;
            INSERT INTO outbox (topic, key, payload)
            VALUES (p_audit_topic, e.datacenter_id, homing_cloudevent(
                'evacuation-' || e.id || '-level-' || lvl.level || '-done', '/homing/scheduler',
                'io.homing.evacuation.level_done', now(), e.datacenter_id,
                jsonb_build_object('evacuation_id', e.id, 'datacenter_id', e.datacenter_id,
                    'level', lvl.level, 'snapshots', lvl.snapshots, 'done', lvl.done,
                    'blocked', lvl.blocked, 'failed', lvl.failed, 'skipped', lvl.skipped,
                    'bytes_sent', lvl.bytes_sent)));
        END LOOP;
        IF NOT EXISTS (SELECT 1 FROM evacuation_items it WHERE it.evacuation_id = e.id
                       AND NOT homing_evacuation_item_ended(it.state)) THEN
            UPDATE evacuations SET state = 'done', finished_at = now(), updated_at = now()
            WHERE id = e.id;
            INSERT INTO outbox (topic, key, payload)
            SELECT p_audit_topic, e.datacenter_id, homing_cloudevent(
                'evacuation-' || e.id || '-completed', '/homing/scheduler',
                'io.homing.evacuation.completed', now(), e.datacenter_id,
                jsonb_build_object('evacuation_id', e.id, 'datacenter_id', e.datacenter_id,
                    'snapshots', count(*),
                    'done', count(*) FILTER (WHERE it.state = 'done'),
                    'blocked', count(*) FILTER (WHERE it.state = 'blocked'),
                    'failed', count(*) FILTER (WHERE it.state = 'failed'),
                    'skipped', count(*) FILTER (WHERE it.state = 'skipped'),
                    'duration_s', round(extract(epoch FROM now() - e.started_at)::numeric, 3)))
            FROM evacuation_items it WHERE it.evacuation_id = e.id;
        END IF;
    END LOOP;
    RETURN n;
END $$;

-- A bulk copy ends like a replicate: a verified inactive copy at the
-- target (the replica's, when the target is its designated replica). As in
-- 020 otherwise.
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
    IF t.kind IN ('replicate', 'evacuate') THEN
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
