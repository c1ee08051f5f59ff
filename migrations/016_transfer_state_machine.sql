-- The transfer state machine, enforced for every writer (the scheduler, the
-- API's operator and agent routes, the SQL functions, an operator's psql),
-- not only inside the functions that mean to follow it:
--
--   (new) ──▶ queued ──▶ running ──▶ succeeded
--               │ ▲         │ │
--               │ └─────────┘ ├──▶ failed
--               │  requeued,  └──▶ cancelled
--               │  paused, retried
--               └──▶ succeeded, failed, cancelled
--
-- A running transfer may be claimed again (its lease expired). An ended
-- transfer never changes state again: a retry is a new transfer.
CREATE FUNCTION homing_transfer_state_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.state <> 'queued' THEN
            RAISE EXCEPTION 'a transfer starts queued, not %', NEW.state
                USING ERRCODE = 'check_violation';
        END IF;
    ELSIF NEW.state IS DISTINCT FROM OLD.state AND NOT (
              (OLD.state = 'queued' AND NEW.state IN ('running', 'succeeded', 'failed', 'cancelled'))
           OR (OLD.state = 'running' AND NEW.state IN ('queued', 'succeeded', 'failed', 'cancelled')))
    THEN
        RAISE EXCEPTION 'transfer %: % cannot become %', OLD.id, OLD.state, NEW.state
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER transfers_state_machine BEFORE INSERT OR UPDATE OF state ON transfers
    FOR EACH ROW EXECUTE FUNCTION homing_transfer_state_check();

-- A transfer finished, as in 012, with its preconditions checked where
-- they can be: the version it moved must be the registered one it was
-- verified against when one is registered, and the bytes of the old copy
-- are taken off the datacenter that really held it (the active placement),
-- not off the transfer's from_dc, which is what the scheduler believed when
-- it queued the move and may have changed since (an operator's move, a
-- retry). When the snapshot is already active at the target, nothing moves
-- twice: the transfer ends succeeded and the placements stay as they are.
CREATE OR REPLACE FUNCTION homing_transfer_succeeded(p_transfer bigint,
                                                     p_content_sha256 text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    t transfers%ROWTYPE;
    s snapshots%ROWTYPE;
    registered text;
    old_dc text;
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
