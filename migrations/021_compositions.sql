-- Compositions: an operator asks for a new version of a snapshot made of a
-- base version with chosen items of another (configuration keys as JSON
-- Pointers, disk extents or the whole disk; POST /v1/snapshots/{id}/versions).
-- Both images are at the datacenter of the snapshot's active placement, so
-- its agent claims the composition, writes the version in its store (what
-- `homing compose` does), registers it like any version, and reports the
-- composition succeeded with that version, or failed with why. A claim
-- left running for 10 minutes (its agent died) may be claimed again.
CREATE TABLE compositions (
    id            bigserial PRIMARY KEY,
    snapshot_id   text NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
    datacenter_id text NOT NULL REFERENCES datacenters (id) ON DELETE CASCADE,
    base_version  bigint NOT NULL CHECK (base_version >= 1),
    from_version  bigint NOT NULL CHECK (from_version >= 1),
    config_paths  text[] NOT NULL DEFAULT '{}',
    disk_extents  jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(disk_extents) = 'array'),
    whole_disk    boolean NOT NULL DEFAULT false,
    state         text NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    version       bigint CHECK (version >= 1),
    error         text,
    requested_by  text,
    claimed_at    timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((state = 'succeeded') = (version IS NOT NULL))
);
CREATE INDEX compositions_claimable ON compositions (datacenter_id, id)
    WHERE state IN ('queued', 'running');
CREATE INDEX compositions_by_snapshot ON compositions (snapshot_id, id);

-- Disk diffs: the changed extents of two versions of a snapshot need both
-- images, which only a datacenter's store has, so GET
-- /v1/snapshots/{id}/diff queues one for the agent of the snapshot's active
-- datacenter (once per pair: a registered version never changes) and
-- answers with its result once the agent has posted it.
CREATE TABLE disk_diffs (
    id            bigserial PRIMARY KEY,
    snapshot_id   text NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
    from_version  bigint NOT NULL CHECK (from_version >= 1),
    to_version    bigint NOT NULL CHECK (to_version >= 1),
    datacenter_id text NOT NULL REFERENCES datacenters (id) ON DELETE CASCADE,
    state         text NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    result        jsonb,
    error         text,
    claimed_at    timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (snapshot_id, from_version, to_version),
    CHECK ((state = 'succeeded') = (result IS NOT NULL))
);
CREATE INDEX disk_diffs_claimable ON disk_diffs (datacenter_id, id)
    WHERE state IN ('queued', 'running');
