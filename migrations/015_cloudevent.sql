-- The CloudEvents 1.0 envelope (structured JSON, schemas/cloudevent.json) of
-- every audit event homing puts in the outbox, in one place: its attributes
-- and its time format (homing_time: RFC 3339, UTC, milliseconds). The
-- scheduler's statements and the API's audit call it.
CREATE FUNCTION homing_cloudevent(p_id text, p_source text, p_type text, p_time timestamptz,
                                  p_subject text, p_data jsonb)
RETURNS jsonb LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object(
        'specversion', '1.0', 'id', p_id, 'source', p_source, 'type', p_type,
        'time', homing_time(p_time), 'subject', p_subject,
        'datacontenttype', 'application/json', 'data', p_data)
$$;
