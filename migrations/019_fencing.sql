-- Never two active: fenced activation. Every switch of a snapshot's active
-- placement advances the snapshot's epoch, and the placement made active
-- carries it. A VM is powered on only under the current epoch, at the
-- datacenter of the active placement, and only once no other datacenter
-- says it still runs it (unless that datacenter is declared down). The
-- agents report what they did; the database refuses what would make two.
-- See agent/README.md, "Powering on".

-- The epoch of the snapshot's current activation (0: never activated), and
-- whether operators want its VM running.
ALTER TABLE snapshots ADD COLUMN epoch bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0);
ALTER TABLE snapshots ADD COLUMN power text NOT NULL DEFAULT 'off' CHECK (power IN ('on', 'off'));
-- The epoch under which a placement was made active (0: before fencing).
ALTER TABLE placements ADD COLUMN epoch bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0);

-- Today's active placements are the first activation.
UPDATE placements SET epoch = 1 WHERE active;
UPDATE snapshots s SET epoch = 1
WHERE EXISTS (SELECT 1 FROM placements p WHERE p.snapshot_id = s.id AND p.active);

-- A row inserted active, or updated to active, is a switch: the snapshot's
-- epoch moves on and the placement takes it. In a trigger, so that every
-- writer (the transfer functions, the API's version registration, an
-- operator's psql) advances it. Updating the snapshot also locks its row,
-- which serializes a switch with the power records of that snapshot.
CREATE FUNCTION homing_placement_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.active AND (TG_OP = 'INSERT' OR NOT OLD.active) THEN
        UPDATE snapshots SET epoch = epoch + 1 WHERE id = NEW.snapshot_id
        RETURNING epoch INTO NEW.epoch;
    ELSIF TG_OP = 'UPDATE' THEN
        NEW.epoch := OLD.epoch; -- an activation's epoch is its own, once given
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER placements_epoch BEFORE INSERT OR UPDATE ON placements
    FOR EACH ROW EXECUTE FUNCTION homing_placement_epoch();

-- What the agents did: a VM of a snapshot powered on, off, or failed to
-- start, at a datacenter, under an epoch. The latest record of a
-- (snapshot, datacenter) says whether a VM runs there.
CREATE TABLE power_records (
    id            bigserial PRIMARY KEY,
    snapshot_id   text NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
    datacenter_id text NOT NULL REFERENCES datacenters (id) ON DELETE CASCADE,
    epoch         bigint NOT NULL CHECK (epoch >= 1),
    state         text NOT NULL CHECK (state IN ('powered_on', 'powered_off', 'failed')),
    reason        text CHECK (length(reason) <= 1024),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX power_records_latest ON power_records (snapshot_id, datacenter_id, id DESC);
CREATE INDEX power_records_by_dc ON power_records (datacenter_id, snapshot_id, id DESC);

-- Why a powered_on record for (snapshot, datacenter, epoch) would break the
-- fence, or NULL when it would not: 'stale-epoch', 'not-active-here' or
-- 'powered-on-elsewhere:<datacenter>'. The caller holds the snapshot's row
-- locked (the trigger below does), so no switch nor other record slips in
-- between the check and the insert.
CREATE FUNCTION homing_power_on_refusal(p_snapshot text, p_dc text, p_epoch bigint)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN s.epoch IS DISTINCT FROM p_epoch THEN 'stale-epoch'
        WHEN NOT EXISTS (SELECT 1 FROM placements p WHERE p.snapshot_id = p_snapshot
                         AND p.active AND p.datacenter_id = p_dc) THEN 'not-active-here'
        ELSE (SELECT 'powered-on-elsewhere:' || l.datacenter_id
              FROM (SELECT DISTINCT ON (r.datacenter_id) r.datacenter_id, r.state
                    FROM power_records r
                    WHERE r.snapshot_id = p_snapshot AND r.datacenter_id <> p_dc
                    ORDER BY r.datacenter_id, r.id DESC) l
              JOIN datacenters d ON d.id = l.datacenter_id
              WHERE l.state = 'powered_on' AND d.status <> 'down'
              ORDER BY l.datacenter_id LIMIT 1)
    END
    FROM (SELECT 1) one LEFT JOIN snapshots s ON s.id = p_snapshot
$$;

-- The fence, for every writer: a record's epoch is one the snapshot had,
-- and a powered_on record must pass homing_power_on_refusal.
CREATE FUNCTION homing_power_record_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    current bigint;
    refusal text;
BEGIN
    SELECT epoch INTO current FROM snapshots WHERE id = NEW.snapshot_id FOR UPDATE;
    IF NEW.epoch > current THEN
        RAISE EXCEPTION 'snapshot %: epoch % is ahead of its current %', NEW.snapshot_id,
            NEW.epoch, current USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.state = 'powered_on' THEN
        refusal := homing_power_on_refusal(NEW.snapshot_id, NEW.datacenter_id, NEW.epoch);
        IF refusal IS NOT NULL THEN
            RAISE EXCEPTION 'snapshot % may not power on at % under epoch %: %',
                NEW.snapshot_id, NEW.datacenter_id, NEW.epoch, refusal
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER power_records_fence BEFORE INSERT ON power_records
    FOR EACH ROW EXECUTE FUNCTION homing_power_record_check();

-- Records are history: never rewritten.
CREATE FUNCTION homing_power_record_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'power records are not rewritten' USING ERRCODE = 'check_violation';
END $$;
CREATE TRIGGER power_records_frozen BEFORE UPDATE ON power_records
    FOR EACH ROW EXECUTE FUNCTION homing_power_record_frozen();
