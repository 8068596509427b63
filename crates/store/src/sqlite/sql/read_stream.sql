SELECT position, event_id, stream, version, event_type, schema_version, occurred_at,
       recorded_at, actor, correlation_id, causation_id, payload, hash, log_hash
FROM events
WHERE stream = ?1 AND version >= ?2
ORDER BY version
LIMIT ?3
