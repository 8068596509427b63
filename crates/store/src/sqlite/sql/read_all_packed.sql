-- A batch of the log as ONE row: a JSON array of events (ids and hashes in hex). sqlx-sqlite
-- hands every row from its worker thread to the async side through a channel; packing the batch
-- makes that one hand-off instead of one per event (reads, replays and rebuilds are bound by it).
SELECT json_group_array(json_array(position, hex(event_id), stream, version, event_type,
           schema_version, occurred_at, recorded_at, actor, hex(correlation_id),
           hex(causation_id), payload, hex(hash)) ORDER BY position)
FROM (
    SELECT * FROM events
    WHERE position > ?1
    ORDER BY position
    LIMIT ?2
)
