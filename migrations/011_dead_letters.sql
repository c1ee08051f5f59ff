-- Reports the scheduler set aside: each one's effects failed on their own,
-- the same way every time, so retrying its batch would wedge its partition
-- forever. Kept whole (the Kafka record's bytes) with the error, for an
-- operator to look at; the offset moved past it in the same transaction.
CREATE TABLE dead_letters (
    id           bigserial PRIMARY KEY,
    group_id     text NOT NULL,
    topic        text NOT NULL,
    partition    integer NOT NULL,
    kafka_offset bigint NOT NULL,
    payload      bytea NOT NULL,
    error        text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (group_id, topic, partition, kafka_offset)
);
