-- The data plane: agents (one per datacenter, with a token scoped to it)
-- claim the transfers into their datacenter by priority, hold them under a
-- lease, report progress, success (with the verified digest) or failure
-- (with a retry after a back-off), and register the new versions of the
-- snapshots active at their datacenter. See agent/README.md.

-- Agents' bearer tokens ("hag_..."). Only a SHA-256 of the secret is kept,
-- with the datacenter the token speaks for.
CREATE TABLE agent_tokens (
    id            bigserial PRIMARY KEY,
    datacenter_id text NOT NULL REFERENCES datacenters (id) ON DELETE CASCADE,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    secret_sha256 text NOT NULL UNIQUE CHECK (secret_sha256 ~ '^[0-9a-f]{64}$'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text,
    revoked_at    timestamptz
);

-- Where the datacenter's agent answers its peers (PUT /v1/agent/endpoint).
ALTER TABLE datacenters ADD COLUMN agent_url text
    CHECK (agent_url ~ '^https?://[^[:space:]]+$' AND length(agent_url) <= 512);

-- Every version of a snapshot an agent registered: its content digest (the
-- SHA-256 of its block manifest), sizes and the VM's configuration, and the
-- datacenter that wrote it. A copy is trusted when it has this digest.
CREATE TABLE snapshot_versions (
    snapshot_id    text NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
    version        bigint NOT NULL CHECK (version >= 1),
    content_sha256 text NOT NULL CHECK (content_sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes     bigint NOT NULL CHECK (size_bytes >= 0),
    virtual_size   bigint NOT NULL CHECK (virtual_size >= 0),
    config         jsonb NOT NULL DEFAULT '{}',
    datacenter_id  text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (snapshot_id, version)
);

-- A placement's copy: the digest it was verified against (NULL: unknown, a
-- copy from before agents), and when it was evicted from the store. An
-- inactive placement that is not evicted is a cached copy: the next
-- transfer to that datacenter sends only what differs from it.
ALTER TABLE placements ADD COLUMN content_sha256 text
    CHECK (content_sha256 ~ '^[0-9a-f]{64}$');
ALTER TABLE placements ADD COLUMN evicted_at timestamptz;
CREATE INDEX placements_cached ON placements (snapshot_id, datacenter_id)
    WHERE NOT active AND evicted_at IS NULL;

-- A transfer under an agent: the version it moves, who holds it and until
-- when (a lease renewed by progress; an expired one may be taken over), the
-- bytes that went over the wire, the pull ticket's hash (the source agent
-- checks the ticket the target presents), and the retry back-off.
ALTER TABLE transfers ADD COLUMN version bigint;
ALTER TABLE transfers ADD COLUMN lease_owner text;
ALTER TABLE transfers ADD COLUMN lease_s integer CHECK (lease_s > 0);
ALTER TABLE transfers ADD COLUMN lease_expires_at timestamptz;
ALTER TABLE transfers ADD COLUMN bytes_sent bigint NOT NULL DEFAULT 0 CHECK (bytes_sent >= 0);
ALTER TABLE transfers ADD COLUMN started_at timestamptz;
ALTER TABLE transfers ADD COLUMN finished_at timestamptz;
ALTER TABLE transfers ADD COLUMN pull_ticket_sha256 text
    CHECK (pull_ticket_sha256 ~ '^[0-9a-f]{64}$');
ALTER TABLE transfers ADD COLUMN not_before timestamptz;
ALTER TABLE transfers ADD COLUMN max_attempts integer NOT NULL DEFAULT 5 CHECK (max_attempts >= 1);

UPDATE transfers t SET version = s.version FROM snapshots s
WHERE s.id = t.snapshot_id AND t.version IS NULL;
UPDATE transfers SET finished_at = updated_at
WHERE state IN ('succeeded', 'failed', 'cancelled') AND finished_at IS NULL;

-- Writers that know nothing of versions (the scheduler, the API's retry)
-- move the snapshot's current one.
CREATE FUNCTION homing_transfer_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.version IS NULL THEN
        SELECT version INTO NEW.version FROM snapshots WHERE id = NEW.snapshot_id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER transfers_version BEFORE INSERT ON transfers
    FOR EACH ROW EXECUTE FUNCTION homing_transfer_version();

-- Priority levels: 1 (most urgent) to 5, 3 by default. The old default 0
-- becomes 3; anything else outside the range is clamped.
UPDATE snapshots SET priority = CASE WHEN priority = 0 THEN 3
                                     ELSE greatest(1, least(5, priority)) END
WHERE priority NOT BETWEEN 1 AND 5;
UPDATE transfers SET priority = CASE WHEN priority = 0 THEN 3
                                     ELSE greatest(1, least(5, priority)) END
WHERE priority NOT BETWEEN 1 AND 5;
ALTER TABLE snapshots ALTER COLUMN priority SET DEFAULT 3;
ALTER TABLE transfers ALTER COLUMN priority SET DEFAULT 3;
ALTER TABLE snapshots ADD CONSTRAINT snapshots_priority_level CHECK (priority BETWEEN 1 AND 5);
ALTER TABLE transfers ADD CONSTRAINT transfers_priority_level CHECK (priority BETWEEN 1 AND 5);

-- What an agent claims from: the open transfers into its datacenter, in
-- claim order.
CREATE INDEX transfers_claimable ON transfers (to_dc, priority, created_at, id)
    WHERE state IN ('queued', 'running');

-- An agent of p_dc claims the next due transfer into it: queued (and past
-- its back-off), or running under a lease that expired (its agent died).
-- Most urgent first, then oldest. Rows other agents are claiming are
-- skipped, not waited for. The claimed transfer is running under p_owner
-- for p_lease_s seconds, with a new pull ticket (its SHA-256) and one more
-- attempt. Returns the row, or nothing when none is due.
CREATE FUNCTION homing_transfer_claim(p_dc text, p_owner text, p_lease_s integer,
                                      p_ticket_sha256 text)
RETURNS SETOF transfers
LANGUAGE sql AS $$
    WITH next AS (
        SELECT id FROM transfers
        WHERE to_dc = p_dc
          AND ((state = 'queued' AND (not_before IS NULL OR not_before <= now()))
               OR (state = 'running' AND lease_expires_at < now()))
        ORDER BY priority, created_at, id
        LIMIT 1
        FOR UPDATE SKIP LOCKED)
    UPDATE transfers t
    SET state = 'running', lease_owner = p_owner, lease_s = p_lease_s,
        lease_expires_at = now() + make_interval(secs => p_lease_s),
        pull_ticket_sha256 = p_ticket_sha256, attempts = t.attempts + 1,
        started_at = now(), not_before = NULL, updated_at = now()
    FROM next WHERE t.id = next.id
    RETURNING t.*
$$;

-- A transfer finished: as in 002, and now the new placement records the
-- version the transfer moved and the digest its copy was verified against
-- (p_content_sha256, else the registered version's). The old placement is
-- deactivated, not deleted: it stays a cached copy until evicted.
DROP FUNCTION homing_transfer_succeeded(bigint);
CREATE FUNCTION homing_transfer_succeeded(p_transfer bigint, p_content_sha256 text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    t transfers%ROWTYPE;
    s snapshots%ROWTYPE;
    digest text;
BEGIN
    SELECT * INTO t FROM transfers WHERE id = p_transfer FOR UPDATE;
    IF NOT FOUND OR t.state NOT IN ('queued', 'running') THEN
        RETURN false;
    END IF;
    SELECT * INTO s FROM snapshots WHERE id = t.snapshot_id;
    SELECT coalesce(p_content_sha256, v.content_sha256) INTO digest
    FROM (SELECT 1) one
    LEFT JOIN snapshot_versions v
           ON v.snapshot_id = t.snapshot_id AND v.version = coalesce(t.version, s.version);

    UPDATE transfers
    SET state = 'succeeded', bytes_done = bytes_total, lease_expires_at = NULL,
        finished_at = now(), updated_at = now()
    WHERE id = t.id;
    IF NOT t.template_present THEN
        INSERT INTO template_replicas (template_id, datacenter_id)
        VALUES (t.template_id, t.to_dc) ON CONFLICT DO NOTHING;
    END IF;
    UPDATE placements SET active = false, deactivated_at = now()
    WHERE snapshot_id = t.snapshot_id AND active;
    INSERT INTO placements (snapshot_id, datacenter_id, version, active, content_sha256)
    VALUES (t.snapshot_id, t.to_dc, coalesce(t.version, s.version), true, digest);

    UPDATE datacenters
    SET reserved_bytes = greatest(reserved_bytes - t.bytes_total, 0),
        used_bytes = used_bytes + t.bytes_total, updated_at = now()
    WHERE id = t.to_dc;
    UPDATE datacenters SET used_bytes = greatest(used_bytes - s.size_bytes, 0), updated_at = now()
    WHERE id = t.from_dc;
    RETURN true;
END $$;

-- As in 002 (the reserved bytes are released; false when the transfer was
-- not queued or running), and the lease ends with it.
CREATE OR REPLACE FUNCTION homing_transfer_ended(p_transfer bigint, p_state text, p_error text)
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
    UPDATE transfers
    SET state = p_state, error = p_error, lease_expires_at = NULL, finished_at = now(),
        updated_at = now()
    WHERE id = t.id;
    UPDATE datacenters SET reserved_bytes = greatest(reserved_bytes - t.bytes_total, 0),
                           updated_at = now()
    WHERE id = t.to_dc;
    RETURN true;
END $$;

-- A running transfer failed. With p_retry and attempts left it goes back to
-- queued, claimable again after 2^attempts seconds (at most 60), its lease
-- and ticket gone and its reservation kept; otherwise it ends failed
-- (homing_transfer_ended). Returns the new state ('queued' or 'failed'), or
-- NULL when it was not running: nothing changes.
CREATE FUNCTION homing_transfer_failed(p_transfer bigint, p_error text, p_retry boolean)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    t transfers%ROWTYPE;
BEGIN
    SELECT * INTO t FROM transfers WHERE id = p_transfer FOR UPDATE;
    IF NOT FOUND OR t.state <> 'running' THEN
        RETURN NULL;
    END IF;
    IF p_retry AND t.attempts < t.max_attempts THEN
        UPDATE transfers
        SET state = 'queued', error = p_error, lease_owner = NULL, lease_expires_at = NULL,
            pull_ticket_sha256 = NULL,
            not_before = now() + make_interval(secs => least(60, power(2, t.attempts))),
            updated_at = now()
        WHERE id = t.id;
        RETURN 'queued';
    END IF;
    PERFORM homing_transfer_ended(p_transfer, 'failed', p_error);
    RETURN 'failed';
END $$;
