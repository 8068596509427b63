-- Everything a batch is planned from, in one statement (one round trip under the global-order
-- lock): the log's last position and its global hash (kind 0; one backward probe of the primary
-- key), the head of each stream the batch touches (kind 1, one backward index probe per stream),
-- and where any of its event ids is already stored (kind 2).
SELECT 0 AS kind, NULL::TEXT AS stream, NULL::BIGINT AS version, last.log_hash AS hash,
       NULL::UUID AS event_id, COALESCE(last.position, 0) AS position
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
    SELECT position, log_hash FROM events ORDER BY position DESC LIMIT 1
) AS last ON true
UNION ALL
SELECT 1, wanted.stream, head.version, head.hash, NULL, NULL
FROM UNNEST($1::TEXT[]) AS wanted (stream)
CROSS JOIN LATERAL (
    SELECT version, hash
    FROM events
    WHERE events.stream = wanted.stream
    ORDER BY version DESC
    LIMIT 1
) AS head
UNION ALL
SELECT 2, stream, version, NULL, event_id, position
FROM events
WHERE event_id = ANY($2::UUID[])
