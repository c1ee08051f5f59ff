-- The operator REST API: access tokens, row versions for ETag/If-Match, and
-- retried transfers linked to what they retry. (Snapshots' allowed_zones
-- come from 002.)

-- Operators' bearer tokens. Only a SHA-256 of the secret is kept: the
-- secret is shown once, when the token is made.
CREATE TABLE operator_tokens (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    role         text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    secret_sha256 text NOT NULL UNIQUE CHECK (secret_sha256 ~ '^[0-9a-f]{64}$'),
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text,
    revoked_at   timestamptz
);

-- Every change of a row the API hands out bumps its row_version: the ETag.
-- A trigger does it, so writers that know nothing of ETags (the scheduler
-- updating used bytes) still invalidate what an operator read.
CREATE FUNCTION homing_bump_row_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.row_version := OLD.row_version + 1;
    RETURN NEW;
END $$;

ALTER TABLE datacenters ADD COLUMN IF NOT EXISTS row_version bigint NOT NULL DEFAULT 1;
ALTER TABLE templates   ADD COLUMN IF NOT EXISTS row_version bigint NOT NULL DEFAULT 1;
ALTER TABLE snapshots   ADD COLUMN IF NOT EXISTS row_version bigint NOT NULL DEFAULT 1;
ALTER TABLE zones       ADD COLUMN IF NOT EXISTS row_version bigint NOT NULL DEFAULT 1;
ALTER TABLE zones       ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE templates   ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE snapshots   ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now();

CREATE TRIGGER datacenters_row_version BEFORE UPDATE ON datacenters
    FOR EACH ROW EXECUTE FUNCTION homing_bump_row_version();
CREATE TRIGGER templates_row_version BEFORE UPDATE ON templates
    FOR EACH ROW EXECUTE FUNCTION homing_bump_row_version();
CREATE TRIGGER snapshots_row_version BEFORE UPDATE ON snapshots
    FOR EACH ROW EXECUTE FUNCTION homing_bump_row_version();
CREATE TRIGGER zones_row_version BEFORE UPDATE ON zones
    FOR EACH ROW EXECUTE FUNCTION homing_bump_row_version();

-- A retry is a new transfer that names the one it retries.
ALTER TABLE transfers ADD COLUMN IF NOT EXISTS retry_of bigint REFERENCES transfers (id);
CREATE UNIQUE INDEX IF NOT EXISTS transfers_one_retry ON transfers (retry_of);

-- The operators' filters.
CREATE INDEX IF NOT EXISTS transfers_by_snapshot ON transfers (snapshot_id, id DESC);
CREATE INDEX IF NOT EXISTS transfers_by_from_dc ON transfers (from_dc, id DESC);
CREATE INDEX IF NOT EXISTS transfers_by_to_dc ON transfers (to_dc, id DESC);
CREATE INDEX IF NOT EXISTS placements_by_snapshot ON placements (snapshot_id, id DESC);
CREATE INDEX IF NOT EXISTS placements_active_by_dc ON placements (datacenter_id) WHERE active;

-- Timestamps as the API writes them: RFC 3339, UTC, milliseconds.
CREATE FUNCTION homing_time(t timestamptz) RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;
