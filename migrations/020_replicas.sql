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
