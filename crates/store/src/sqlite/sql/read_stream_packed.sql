-- One stream's events as ONE row (the format, and the missing aggregate ORDER BY, of
-- read_all_packed.sql).
SELECT COALESCE(group_concat(
           position || char(31) || hex(event_id) || char(31) || stream || char(31) || version
           || char(31) || event_type || char(31) || schema_version || char(31) || occurred_at
           || char(31) || recorded_at || char(31) || actor || char(31) || hex(correlation_id)
           || char(31) || hex(causation_id) || char(31) || payload || char(31) || hex(hash)
           || char(31) || hex(log_hash),
           char(30)), '')
FROM (
    SELECT * FROM events
    WHERE stream = ?1 AND version >= ?2
    ORDER BY version
    LIMIT ?3
)
