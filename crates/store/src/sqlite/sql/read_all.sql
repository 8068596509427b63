SELECT position, event_id, stream, version, event_type, schema_version, occurred_at,
       recorded_at, actor, correlation_id, causation_id, payload, hash, log_hash
FROM events
WHERE position > ?1
ORDER BY position
LIMIT ?2
