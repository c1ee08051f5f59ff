-- The transfer job, the value of every message on the transfers topic, built
-- in one place. Each writer that queues a transfer (the scheduler's move,
-- the API's retry, an evacuation, a failback, a replica or pre-staging
-- refresh) had its own jsonb_build_object, and their keys had drifted:
-- kind, version and retry_of were in some jobs and not in others. Every job
-- now has all of them, null when the transfer has none (README "Kafka",
-- schemas/transfer-job.json).
--
-- It takes the row, not its id: a job is written in the statement that
-- inserts its transfer, and a lookup by id there would not see the row
-- (nor cost nothing on the scheduler's path, one per move). A CTE's
-- RETURNING * of transfers is an anonymous record; pass it as t::transfers.
-- A single SELECT, STABLE like jsonb_build_object: the planner inlines it.
CREATE FUNCTION homing_transfer_job(t transfers) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object(
        'transfer_id', t.id, 'kind', t.kind, 'snapshot_id', t.snapshot_id,
        'version', t.version, 'from_dc', t.from_dc, 'to_dc', t.to_dc,
        'template_id', t.template_id, 'template_present', t.template_present,
        'priority', t.priority, 'reason', t.reason, 'bytes_total', t.bytes_total,
        'idempotency_key', t.idempotency_key, 'retry_of', t.retry_of)
$$;

-- The writers in SQL, as migrations 022, 026 and 031 left them but for the
-- job. (023's homing_failback(bigint, text) was dropped by 026.)

CREATE OR REPLACE FUNCTION homing_evacuation_job(p_topic text, p_transfer bigint) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO outbox (topic, key, payload)
    SELECT p_topic, t.snapshot_id, homing_transfer_job(t)
    FROM transfers t WHERE t.id = p_transfer
$$;

CREATE OR REPLACE FUNCTION homing_failback(p_failover bigint, p_topic text, p_room bigint)
RETURNS bigint
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
        SELECT p_topic, t.snapshot_id, homing_transfer_job(t::transfers)
        FROM t)
    SELECT count(*) INTO n FROM t;
    RETURN n;
END $$;

CREATE OR REPLACE FUNCTION homing_queue_replica_refreshes(p_reason text, p_topic text,
                                                          p_only text[])
RETURNS TABLE (snapshot_id text, to_dc text, transfer_id bigint)
LANGUAGE sql AS $$
WITH due AS (
  SELECT r.snapshot_id, a.datacenter_id AS from_dc, r.datacenter_id AS to_dc,
    s.template_id, s.priority, s.version, c.id IS NULL AS missing,
    s.size_bytes + CASE WHEN x.present THEN 0 ELSE tpl.size_bytes END AS bytes,
    x.present
  FROM replicas r
  JOIN snapshots s ON s.id = r.snapshot_id
  JOIN templates tpl ON tpl.id = s.template_id
  JOIN placements a ON a.snapshot_id = r.snapshot_id AND a.active
  JOIN datacenters src ON src.id = a.datacenter_id AND src.status <> 'down'
  JOIN datacenters dst ON dst.id = r.datacenter_id AND dst.status <> 'down'
  LEFT JOIN placements c ON c.id = r.placement_id
  CROSS JOIN LATERAL (SELECT EXISTS (SELECT 1 FROM template_replicas tr
    WHERE tr.template_id = s.template_id AND tr.datacenter_id = r.datacenter_id)
    AS present) x
  WHERE r.reason = p_reason
    AND (c.id IS NULL OR c.version < s.version) AND a.datacenter_id <> r.datacenter_id
    AND (p_only IS NULL OR r.snapshot_id = ANY (p_only))
    AND NOT EXISTS (SELECT 1 FROM transfers t WHERE t.snapshot_id = r.snapshot_id
      AND t.to_dc = r.datacenter_id
      AND (t.state IN ('queued', 'running') OR (t.kind = 'replicate'
           AND t.state IN ('failed', 'cancelled')
           AND t.finished_at > now() - interval '5 minutes')))),
 t AS (
  INSERT INTO transfers (snapshot_id, from_dc, to_dc, template_id, template_present,
    priority, reason, idempotency_key, bytes_total, kind, version)
  SELECT snapshot_id, from_dc, to_dc, template_id, present, priority,
    CASE WHEN p_reason = 'prestage' THEN 'prestage'
         WHEN missing THEN 'replica-missing' ELSE 'replica-behind' END,
    CASE WHEN p_reason = 'prestage' THEN 'prestage/' ELSE 'replicate/' END
      || snapshot_id || '/' || to_dc || '/v' || version || '/'
      || (extract(epoch FROM now()) * 1000)::bigint,
    bytes, 'replicate', version FROM due
  ON CONFLICT DO NOTHING RETURNING *),
 reserve AS (
  UPDATE datacenters d SET reserved_bytes = d.reserved_bytes + s.bytes, updated_at = now()
  FROM (SELECT to_dc, sum(bytes_total) AS bytes FROM t GROUP BY to_dc) s
  WHERE d.id = s.to_dc),
 job AS (
  INSERT INTO outbox (topic, key, payload)
  SELECT p_topic, t.snapshot_id, homing_transfer_job(t::transfers) FROM t)
SELECT t.snapshot_id, t.to_dc, t.id FROM t
$$;
