-- A batch of the log as ONE row. sqlx-sqlite hands every row from its worker thread to the async
-- side through a channel; packing the batch makes that one hand-off instead of one per event
-- (reads, replays and rebuilds are bound by it).
--
-- Events are separated by char(30) (record separator), an event's fields by char(31) (unit
-- separator); ids and hashes in hex. Neither character can occur in a field: payloads are
-- JSON, which escapes every control character, and streams, types and actors are plain names.
-- Unlike a JSON array of the events, nothing is escaped on the way in or out (the payloads,
-- most of the bytes, are copied as they are).
--
-- The aggregate has no ORDER BY of its own: SQLite (3.44+) implements one by first copying every
-- row of the batch into a temporary B-tree, which spilled to a temporary file and was half the
-- cost of reading the log. The rows arrive in position order from the subquery; `unpack` sorts
-- them anyway, since SQLite does not promise group_concat's order (a no-op pass when sorted).
SELECT COALESCE(group_concat(
           position || char(31) || hex(event_id) || char(31) || stream || char(31) || version
           || char(31) || event_type || char(31) || schema_version || char(31) || occurred_at
           || char(31) || recorded_at || char(31) || actor || char(31) || hex(correlation_id)
           || char(31) || hex(causation_id) || char(31) || payload || char(31) || hex(hash)
           || char(31) || hex(log_hash),
           char(30)), '')
FROM (
    SELECT * FROM events
    WHERE position > ?1
    ORDER BY position
    LIMIT ?2
)
