-- Priority levels and warm replicas. A snapshot's priority level (1 most
-- urgent to 5, migration 012) is also its transfers' level, and names a
-- protection policy: how many warm replicas its snapshots keep and how
-- stale one may become (the RPO). A replica is an inactive, verified copy at
-- another datacenter that homing keeps current with `replicate` transfers
-- and never evicts while it is designated; it counts against its
-- datacenter's capacity. See scheduler/README.md, "Replicas".

-- A transfer copies the priority level at the time it is queued; a level
-- changed since reaches the transfers still open, so that the queue and the
-- snapshot never disagree.
CREATE FUNCTION homing_priority_follows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE transfers SET priority = NEW.priority, updated_at = now()
    WHERE snapshot_id = NEW.id AND state IN ('queued', 'running')
      AND priority <> NEW.priority;
    RETURN NULL;
END $$;
CREATE TRIGGER snapshots_priority_follows AFTER UPDATE OF priority ON snapshots
    FOR EACH ROW WHEN (OLD.priority IS DISTINCT FROM NEW.priority)
    EXECUTE FUNCTION homing_priority_follows();

-- What a priority level protects: how many warm replicas its snapshots keep
-- (0: none) and how stale one may become, in seconds (its RPO; NULL without
-- replicas). Operators change it (PUT /v1/protection-policies/{level}).
-- Defaults: the urgent levels keep a replica a minute or five behind, the
-- ordinary level 3 one an hour behind, 4 and 5 none (README, "Replicas").
CREATE TABLE protection_policies (
    level       integer PRIMARY KEY CHECK (level BETWEEN 1 AND 5),
    replicas    integer NOT NULL CHECK (replicas BETWEEN 0 AND 3),
    rpo_s       integer CHECK (rpo_s BETWEEN 10 AND 2592000),
    row_version bigint NOT NULL DEFAULT 1,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((replicas = 0) = (rpo_s IS NULL))
);
INSERT INTO protection_policies (level, replicas, rpo_s) VALUES
    (1, 1, 60), (2, 1, 300), (3, 1, 3600), (4, 0, NULL), (5, 0, NULL);
CREATE TRIGGER protection_policies_row_version BEFORE UPDATE ON protection_policies
    FOR EACH ROW EXECUTE FUNCTION homing_bump_row_version();
