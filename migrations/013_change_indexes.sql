-- The scheduler looks every few seconds for what changed under it (transfers
-- that ran or ended, snapshots edited, placements made): by time, indexed.
CREATE INDEX IF NOT EXISTS transfers_by_updated_at ON transfers (updated_at);
CREATE INDEX IF NOT EXISTS snapshots_by_updated_at ON snapshots (updated_at);
CREATE INDEX IF NOT EXISTS snapshots_by_created_at ON snapshots (created_at);
CREATE INDEX IF NOT EXISTS placements_by_created_at ON placements (created_at);
