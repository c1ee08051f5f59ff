-- An outbox row that Kafka refuses for its own sake (too large, a topic that
-- does not exist, not allowed) would hold every row behind it forever, the
-- transfer jobs too. The relay counts such refusals per row; after
-- --outbox-max-attempts of them the row is parked: set aside, visible
-- (homing_outbox_parked_rows, the relay's log), and the rows behind it go
-- on. A broker that does not answer in time is not the row's fault and
-- counts nothing. An operator who has mended the cause puts a parked row
-- back with: UPDATE outbox SET parked_at = NULL, attempts = 0 WHERE id = ...
ALTER TABLE outbox ADD COLUMN attempts integer NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN last_error text;
ALTER TABLE outbox ADD COLUMN parked_at timestamptz;
CREATE INDEX outbox_parked ON outbox (id) WHERE parked_at IS NOT NULL AND sent_at IS NULL;
