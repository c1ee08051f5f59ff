-- What the incremental replica pass (scheduler/replicas.c) asks: which
-- snapshots' placements and replicas changed since its last pass. A
-- placement's every change is stamped (activated, deactivated, evicted, its
-- digest filled in), by a trigger, so no writer can forget it.
ALTER TABLE placements ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

CREATE FUNCTION homing_stamp_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;
CREATE TRIGGER placements_updated_at BEFORE UPDATE ON placements
    FOR EACH ROW EXECUTE FUNCTION homing_stamp_updated_at();

CREATE INDEX placements_by_updated_at ON placements (updated_at);
CREATE INDEX replicas_by_updated_at ON replicas (updated_at);
