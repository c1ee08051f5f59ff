-- A consumer's offsets advanced in one statement that fails when another
-- process moved them first: the scheduler sends a batch's writes, its
-- offsets and its COMMIT together (one round trip) and cannot look at a row
-- count before the COMMIT, so the statement itself must abort the
-- transaction. `seen` is the offset the caller last read (NULL: no row yet,
-- inserted unless one appeared meanwhile). SQLSTATE HM409 says another
-- writer won (store: -ESTALE).
CREATE FUNCTION homing_advance_offsets(in_group text, in_topic text, partitions integer[],
                                       seen bigint[], upto bigint[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    changed integer;
BEGIN
    IF cardinality(partitions) <> cardinality(seen) OR cardinality(partitions) <> cardinality(upto) THEN
        RAISE EXCEPTION 'homing_advance_offsets: % partitions, % seen, % upto',
            cardinality(partitions), cardinality(seen), cardinality(upto)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR i IN 1 .. cardinality(partitions) LOOP
        IF seen[i] IS NULL THEN
            INSERT INTO consumer_offsets AS o (group_id, topic, partition, next_offset)
            VALUES (in_group, in_topic, partitions[i], upto[i]) ON CONFLICT DO NOTHING;
        ELSE
            UPDATE consumer_offsets AS o SET next_offset = upto[i], updated_at = now()
            WHERE o.group_id = in_group AND o.topic = in_topic AND o.partition = partitions[i]
              AND o.next_offset = seen[i];
        END IF;
        GET DIAGNOSTICS changed = ROW_COUNT;
        IF changed <> 1 THEN
            RAISE EXCEPTION 'partition % of % (group %) is not at offset % any more',
                partitions[i], in_topic, in_group, coalesce(seen[i]::text, 'none')
                USING ERRCODE = 'HM409';
        END IF;
    END LOOP;
END
$$;
