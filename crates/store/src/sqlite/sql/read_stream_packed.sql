-- One stream's events as ONE row (see read_all_packed.sql).
SELECT json_group_array(json_array(position, hex(event_id), stream, version, event_type,
           schema_version, occurred_at, recorded_at, actor, hex(correlation_id),
           hex(causation_id), payload, hex(hash)) ORDER BY version)
FROM (
    SELECT * FROM events
    WHERE stream = ?1 AND version >= ?2
    ORDER BY version
    LIMIT ?3
)
