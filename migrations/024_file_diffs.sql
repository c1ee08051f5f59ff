-- File diffs: the guest files that differ between two versions of a
-- snapshot need both images opened in a libguestfs appliance, which takes
-- tens of seconds, so GET /v1/snapshots/{id}/diff?files=true queues one
-- (once per pair; a failed one is queued again by the next ask) for the
-- agent of the snapshot's active datacenter, which reports its phase and
-- percent done while it runs, then the files or why it could not
-- (`unavailable`: libguestfs cannot run at that agent). GET
-- /v1/file-diffs/{id} answers it. A claim left running for 10 minutes
-- (its agent died) may be claimed again.
CREATE TABLE file_diffs (
    id            bigserial PRIMARY KEY,
    snapshot_id   text NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
    from_version  bigint NOT NULL CHECK (from_version >= 1),
    to_version    bigint NOT NULL CHECK (to_version >= 1),
    datacenter_id text NOT NULL REFERENCES datacenters (id) ON DELETE CASCADE,
    state         text NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    phase         text,
    progress      integer NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    result        jsonb,
    error         text,
    unavailable   boolean NOT NULL DEFAULT false,
    claimed_at    timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (snapshot_id, from_version, to_version),
    CHECK ((state = 'succeeded') = (result IS NOT NULL)),
    CHECK (NOT unavailable OR state = 'failed')
);
CREATE INDEX file_diffs_claimable ON file_diffs (datacenter_id, id)
    WHERE state IN ('queued', 'running');

-- A composition may also take guest files from its other version: paths
-- ("/etc/hostname", or "/dev/sdaN:/path" on another file system) its agent
-- copies whole into the new version through libguestfs (diff_files_take).
ALTER TABLE compositions ADD COLUMN guest_files text[] NOT NULL DEFAULT '{}';
