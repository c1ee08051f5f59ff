-- The scheduler learns what changed under it from updated_at (a snapshot's
-- zones or size, a zone redrawn). The API stamps it; so must every other
-- writer, an operator's psql included: the trigger that bumps the ETag
-- stamps the time too (the four tables it runs on all have the column).
CREATE OR REPLACE FUNCTION homing_bump_row_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.row_version := OLD.row_version + 1;
    NEW.updated_at := now();
    RETURN NEW;
END $$;
