-- One way to bring a designated copy up to its snapshot's version, for both
-- passes that designate copies: the replica pass (reason 'protection',
-- scheduler/replicas.c) and the pre-staging pass ('prestage',
-- scheduler/prestage.c). They had each their own copy of this statement,
-- and the two had drifted apart in what holds a refresh back.
--
-- A replicate transfer is queued for every copy of p_reason (of the
-- snapshots p_only; NULL: all) that is missing or older than its
-- snapshot's version, from the active site, both sites up; not while any
-- transfer of the snapshot towards that site is open (a move there brings
-- the newest version and ends the designation on arrival), nor within five
-- minutes of a replicate one there that failed or was cancelled. Its bytes
-- are reserved at the target and its job goes on p_topic (the transfers
-- topic). Returns what was queued.
CREATE FUNCTION homing_queue_replica_refreshes(p_reason text, p_topic text, p_only text[])
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
  SELECT p_topic, t.snapshot_id, jsonb_build_object(
    'transfer_id', t.id, 'kind', t.kind, 'snapshot_id', t.snapshot_id,
    'from_dc', t.from_dc, 'to_dc', t.to_dc, 'template_id', t.template_id,
    'template_present', t.template_present, 'priority', t.priority,
    'reason', t.reason, 'bytes_total', t.bytes_total, 'version', t.version,
    'idempotency_key', t.idempotency_key) FROM t)
SELECT t.snapshot_id, t.to_dc, t.id FROM t
$$;
