-- Where a user is, is their devices' latest fix (device_locations). A
-- device that changes hands (the scheduler's upsert gives it the user of
-- its latest report) or is deleted changes where its old user is, and no
-- row of that user changes: the incremental replica pass
-- (scheduler/replicas.c), which looks at the users whose devices reported
-- since its last pass, would see it only at its next full pass. The old
-- user is written down here; the pass plans their snapshots again and
-- forgets the rows it has seen.
CREATE TABLE device_user_changes (
    user_id    text        NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX device_user_changes_by_time ON device_user_changes (changed_at);

CREATE FUNCTION homing_note_device_user_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO device_user_changes (user_id) VALUES (OLD.user_id);
    RETURN NULL;
END $$;

-- Only a change of hands fires it: the scheduler rewrites user_id with
-- every fix, almost always to the same user.
CREATE TRIGGER device_locations_changed_hands AFTER UPDATE OF user_id ON device_locations
    FOR EACH ROW WHEN (OLD.user_id IS DISTINCT FROM NEW.user_id)
    EXECUTE FUNCTION homing_note_device_user_change();
CREATE TRIGGER device_locations_deleted AFTER DELETE ON device_locations
    FOR EACH ROW EXECUTE FUNCTION homing_note_device_user_change();
