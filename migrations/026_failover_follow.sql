-- Failover, followed through: a failback needs room, a site set down (or
-- back) outside the API still fails over (or ends its failover), and a
-- site down during its evacuation hands the evacuation's waiting items to
-- its failover.
--
-- A failback is a move like any other: it needs room at the returned site.
-- homing_failback_due lists what a failback would queue (the snapshots still
-- where the failover put it, not queued back yet), most urgent first, with
-- each one's bytes and the running total, so the API can say which do not
-- fit before anything is reserved; homing_failback then queues them, all
-- of them (the operator's choice to exceed the room) or, with p_room, only
-- the most urgent ones whose running total fits in it. See README,
-- "Failover".

CREATE FUNCTION homing_failback_due(p_failover bigint)
RETURNS TABLE (snapshot_id text, from_dc text, to_dc text, template_id text,
               priority integer, present boolean, bytes bigint, running_bytes bigint)
LANGUAGE sql STABLE AS $$
    SELECT d.*, sum(d.bytes) OVER (ORDER BY d.priority, d.snapshot_id)::bigint
    FROM (SELECT i.snapshot_id, i.from_dc, i.to_dc, s.template_id, s.priority, x.present,
                 s.size_bytes + CASE WHEN x.present THEN 0 ELSE tpl.size_bytes END AS bytes
          FROM failover_items i
          JOIN snapshots s ON s.id = i.snapshot_id
          JOIN templates tpl ON tpl.id = s.template_id
          JOIN placements p ON p.snapshot_id = s.id AND p.active AND p.datacenter_id = i.to_dc
          CROSS JOIN LATERAL (SELECT EXISTS (SELECT 1 FROM template_replicas r
                                             WHERE r.template_id = s.template_id
                                               AND r.datacenter_id = i.from_dc) AS present) x
          WHERE i.failover_id = p_failover AND i.outcome = 'failed_over'
            AND NOT EXISTS (SELECT 1 FROM placements q WHERE q.snapshot_id = s.id
                            AND q.datacenter_id <> i.to_dc AND q.epoch > i.epoch)
            AND NOT EXISTS (SELECT 1 FROM transfers t
                            WHERE t.idempotency_key = 'failback/' || p_failover || '/'
                                                      || i.snapshot_id)) d
$$;

DROP FUNCTION homing_failback(bigint, text);

-- Queues the failback's moves; p_room NULL: all that are due, else the most
-- urgent ones while their running total fits in p_room bytes. Returns how
-- many it queued.
CREATE FUNCTION homing_failback(p_failover bigint, p_topic text, p_room bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    WITH due AS (
        SELECT * FROM homing_failback_due(p_failover) d
        WHERE p_room IS NULL OR d.running_bytes <= p_room),
    t AS (
        INSERT INTO transfers (snapshot_id, from_dc, to_dc, template_id, template_present,
                               priority, reason, idempotency_key, bytes_total)
        SELECT d.snapshot_id, d.to_dc, d.from_dc, d.template_id, d.present, d.priority,
               'failback', 'failback/' || p_failover || '/' || d.snapshot_id, d.bytes
        FROM due d ORDER BY d.priority, d.snapshot_id
        ON CONFLICT DO NOTHING
        RETURNING *),
    reserve AS (
        UPDATE datacenters d SET reserved_bytes = d.reserved_bytes + x.bytes, updated_at = now()
        FROM (SELECT to_dc, sum(bytes_total) AS bytes FROM t GROUP BY to_dc) x
        WHERE d.id = x.to_dc),
    mark AS (
        UPDATE failover_items i SET failback_transfer_id = t.id
        FROM t WHERE i.failover_id = p_failover AND i.snapshot_id = t.snapshot_id),
    job AS (
        INSERT INTO outbox (topic, key, payload)
        SELECT p_topic, t.snapshot_id, jsonb_build_object(
            'transfer_id', t.id, 'snapshot_id', t.snapshot_id, 'from_dc', t.from_dc,
            'to_dc', t.to_dc, 'template_id', t.template_id,
            'template_present', t.template_present, 'priority', t.priority,
            'reason', t.reason, 'bytes_total', t.bytes_total,
            'idempotency_key', t.idempotency_key, 'kind', t.kind)
        FROM t)
    SELECT count(*) INTO n FROM t;
    RETURN n;
END $$;

-- A site set down outside the API (an UPDATE by psql) fails over all the
-- same: the scheduler calls homing_failover_follow at every catalog reload.
-- A down site without an open failover gets one, a site back (active or
-- draining) with an open failover sees it end, each with an event from the
-- scheduler. The datacenter's row is locked first and looked at again, as
-- the API's status change locks it: with several schedulers, or one and
-- the API, a site fails over exactly once. Returns what it did.
CREATE FUNCTION homing_failover_follow(p_topic text)
RETURNS TABLE (datacenter_id text, failover_id bigint, started boolean)
LANGUAGE plpgsql AS $$
DECLARE
    d record;
    f bigint;
    actor constant jsonb := '{"kind": "scheduler"}';
BEGIN
    FOR d IN SELECT x.id FROM datacenters x
             WHERE x.status = 'down'
               AND NOT EXISTS (SELECT 1 FROM failovers o
                               WHERE o.datacenter_id = x.id AND o.ended_at IS NULL)
             ORDER BY x.id
    LOOP
        PERFORM 1 FROM datacenters x WHERE x.id = d.id AND x.status = 'down' FOR UPDATE;
        CONTINUE WHEN NOT FOUND OR EXISTS (SELECT 1 FROM failovers o
                                           WHERE o.datacenter_id = d.id AND o.ended_at IS NULL);
        f := homing_failover(d.id, p_topic, actor);
        INSERT INTO outbox (topic, key, payload)
        SELECT p_topic, d.id, homing_cloudevent(
            'failover-' || f || '-started', '/homing/scheduler', 'io.homing.failover.started',
            now(), d.id, jsonb_build_object(
                'failover_id', f, 'datacenter_id', d.id, 'actor', actor,
                'failed_over', count(*) FILTER (WHERE i.outcome = 'failed_over'),
                'unrecoverable', count(*) FILTER (WHERE i.outcome = 'unrecoverable')))
        FROM failover_items i WHERE i.failover_id = f;
        datacenter_id := d.id;
        failover_id := f;
        started := true;
        RETURN NEXT;
    END LOOP;
    FOR d IN SELECT o.id, o.datacenter_id FROM failovers o
             JOIN datacenters x ON x.id = o.datacenter_id
             WHERE o.ended_at IS NULL AND x.status <> 'down'
             ORDER BY o.id
    LOOP
        PERFORM 1 FROM datacenters x WHERE x.id = d.datacenter_id AND x.status <> 'down'
        FOR UPDATE;
        CONTINUE WHEN NOT FOUND OR NOT EXISTS (SELECT 1 FROM failovers o
                                               WHERE o.id = d.id AND o.ended_at IS NULL);
        PERFORM homing_failover_end(d.datacenter_id);
        INSERT INTO outbox (topic, key, payload)
        SELECT p_topic, d.datacenter_id, homing_cloudevent(
            'failover-' || d.id || '-ended', '/homing/scheduler', 'io.homing.failover.ended',
            now(), d.datacenter_id, jsonb_build_object(
                'failover_id', d.id, 'datacenter_id', d.datacenter_id, 'actor', actor,
                'recovered', count(*) FILTER (WHERE i.recovered_at IS NOT NULL)))
        FROM failover_items i WHERE i.failover_id = d.id;
        datacenter_id := d.datacenter_id;
        failover_id := d.id;
        started := false;
        RETURN NEXT;
    END LOOP;
END $$;

-- A site down during its evacuation: the items the evacuation had not
-- switched over yet (pending, copying, stopping, or switching without their
-- final move done: still active at the site, so the failover dealt with
-- them) are the failover's now. Their transfers still open end cancelled (a
-- bulk copy or a final move from a dead site cannot finish), the room they
-- held at their targets is given back, and they end `skipped`, saying what
-- the failover did with the snapshot; the evacuation then completes as
-- usual. Items switched over already stay the evacuation's. Returns how
-- many it handed over.
CREATE FUNCTION homing_evacuation_hand_over(p_failover bigint) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    i record;
    n integer := 0;
BEGIN
    FOR i IN SELECT it.evacuation_id, it.snapshot_id, it.target_dc, it.held_bytes,
                    it.bulk_transfer, it.final_transfer, fi.outcome, fi.to_dc, f.datacenter_id
             FROM failovers f
             JOIN evacuations e ON e.datacenter_id = f.datacenter_id AND e.state = 'running'
             JOIN evacuation_items it ON it.evacuation_id = e.id
             JOIN failover_items fi ON fi.failover_id = f.id AND fi.snapshot_id = it.snapshot_id
             WHERE f.id = p_failover AND NOT homing_evacuation_item_ended(it.state)
             ORDER BY it.priority, it.snapshot_id
             FOR UPDATE OF it
    LOOP
        PERFORM homing_transfer_ended(t.id, 'cancelled', 'failover of ' || i.datacenter_id)
        FROM transfers t
        WHERE t.id IN (i.bulk_transfer, i.final_transfer) AND t.state IN ('queued', 'running');
        UPDATE datacenters SET reserved_bytes = greatest(reserved_bytes - i.held_bytes, 0),
                               updated_at = now()
        WHERE id = i.target_dc AND i.held_bytes > 0;
        UPDATE evacuation_items SET state = 'skipped', held_bytes = 0,
            error = format('%s went down: handed to failover %s, %s', i.datacenter_id,
                           p_failover, CASE i.outcome
                               WHEN 'failed_over' THEN 'failed over to ' || i.to_dc
                               ELSE 'unrecoverable until the site returns' END),
            finished_at = now(), updated_at = now()
        WHERE evacuation_id = i.evacuation_id AND snapshot_id = i.snapshot_id;
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;

-- The failover itself, as in 023, its events now from whoever started it
-- (source /homing/api or /homing/scheduler), and the site's evacuation, if
-- one runs, handing its waiting items over to it.
CREATE OR REPLACE FUNCTION homing_failover(p_dc text, p_topic text, p_actor jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    f bigint;
    a record;
    best record;
    lost jsonb;
    n_lost bigint;
    new_epoch bigint;
    new_size bigint;
    data jsonb;
    -- Who started it: an operator through the API, or the scheduler.
    src text := CASE WHEN p_actor->>'kind' = 'scheduler' THEN 'scheduler' ELSE 'api' END;
BEGIN
    INSERT INTO failovers (datacenter_id) VALUES (p_dc) RETURNING id INTO f;
    FOR a IN
        SELECT p.id AS placement_id, p.snapshot_id, s.priority, s.version AS newest,
               s.size_bytes
        FROM placements p JOIN snapshots s ON s.id = p.snapshot_id
        WHERE p.datacenter_id = p_dc AND p.active
        ORDER BY s.priority, s.id
        FOR UPDATE OF p, s
    LOOP
        SELECT l.datacenter_id, l.lag_s, l.bytes_behind, c.id AS copy_id, c.version
        INTO best
        FROM replica_lag l
        JOIN replicas r ON r.snapshot_id = l.snapshot_id AND r.datacenter_id = l.datacenter_id
        JOIN placements c ON c.id = r.placement_id
        JOIN datacenters d ON d.id = l.datacenter_id
        WHERE l.snapshot_id = a.snapshot_id AND d.status <> 'down' AND c.evicted_at IS NULL
          AND NOT c.active
        ORDER BY c.version DESC, l.lag_s, l.datacenter_id
        LIMIT 1;
        IF NOT FOUND THEN
            INSERT INTO failover_items (failover_id, snapshot_id, priority, outcome, from_dc,
                                        newest_version)
            VALUES (f, a.snapshot_id, a.priority, 'unrecoverable', p_dc, a.newest);
            data := jsonb_build_object('failover_id', f, 'snapshot_id', a.snapshot_id,
                                       'priority', a.priority, 'datacenter_id', p_dc,
                                       'newest_version', a.newest, 'actor', p_actor);
            INSERT INTO outbox (topic, key, payload)
            VALUES (p_topic, a.snapshot_id,
                    homing_cloudevent(src || '-' || gen_random_uuid(), '/homing/' || src,
                                      'io.homing.snapshot.unrecoverable', now(), a.snapshot_id,
                                      data));
            CONTINUE;
        END IF;

        PERFORM homing_transfer_ended(t.id, 'cancelled', 'failover of ' || p_dc)
        FROM transfers t
        WHERE t.snapshot_id = a.snapshot_id AND t.state IN ('queued', 'running');

        SELECT coalesce(jsonb_agg(jsonb_build_object('version', v.version, 'content_sha256',
                                                     v.content_sha256, 'size_bytes', v.size_bytes,
                                                     'datacenter_id', v.datacenter_id,
                                                     'created_at', homing_time(v.created_at))
                                  ORDER BY v.version), '[]'::jsonb),
               count(*)
        INTO lost, n_lost
        FROM snapshot_versions v
        WHERE v.snapshot_id = a.snapshot_id AND v.version > best.version;
        DELETE FROM disk_diffs
        WHERE snapshot_id = a.snapshot_id
          AND (from_version > best.version OR to_version > best.version);
        DELETE FROM snapshot_versions
        WHERE snapshot_id = a.snapshot_id AND version > best.version;

        -- The switch: the dead site's copy becomes a cached one, the
        -- replica's the active one (the trigger of 019 advances the epoch).
        DELETE FROM replicas WHERE snapshot_id = a.snapshot_id AND datacenter_id = best.datacenter_id;
        UPDATE placements SET active = false, deactivated_at = now() WHERE id = a.placement_id;
        UPDATE placements SET evicted_at = now()
        WHERE snapshot_id = a.snapshot_id AND version > best.version AND NOT active
          AND evicted_at IS NULL;
        UPDATE placements SET active = true, deactivated_at = NULL WHERE id = best.copy_id;

        SELECT coalesce(v.size_bytes, a.size_bytes) INTO new_size
        FROM (SELECT 1) one
        LEFT JOIN snapshot_versions v ON v.snapshot_id = a.snapshot_id AND v.version = best.version;
        UPDATE snapshots SET version = best.version, size_bytes = new_size, updated_at = now()
        WHERE id = a.snapshot_id
        RETURNING epoch INTO new_epoch;
        UPDATE datacenters SET used_bytes = used_bytes + new_size, updated_at = now()
        WHERE id = best.datacenter_id;
        UPDATE datacenters SET used_bytes = greatest(used_bytes - a.size_bytes, 0),
                               updated_at = now()
        WHERE id = p_dc;

        INSERT INTO failover_items (failover_id, snapshot_id, priority, outcome, from_dc, to_dc,
                                    epoch, version, newest_version, versions_lost, lost, lag_s,
                                    bytes_behind)
        VALUES (f, a.snapshot_id, a.priority, 'failed_over', p_dc, best.datacenter_id, new_epoch,
                best.version, a.newest, n_lost, lost, best.lag_s, best.bytes_behind);
        data := jsonb_build_object('failover_id', f, 'snapshot_id', a.snapshot_id,
                                   'priority', a.priority, 'from_dc', p_dc,
                                   'to_dc', best.datacenter_id, 'epoch', new_epoch,
                                   'version', best.version, 'newest_version', a.newest,
                                   'versions_lost', n_lost, 'data_loss_s', best.lag_s,
                                   'data_loss_bytes', best.bytes_behind, 'actor', p_actor);
        INSERT INTO outbox (topic, key, payload)
        VALUES (p_topic, a.snapshot_id,
                homing_cloudevent(src || '-' || gen_random_uuid(), '/homing/' || src,
                                  'io.homing.snapshot.failed_over', now(), a.snapshot_id, data));
    END LOOP;
    PERFORM homing_evacuation_hand_over(f);
    RETURN f;
END $$;
