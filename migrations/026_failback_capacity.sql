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
