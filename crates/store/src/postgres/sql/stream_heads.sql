-- The last event of each stream a batch touches: one backward index probe per stream, however
-- long the stream (DISTINCT ON would walk every version of it).
SELECT wanted.stream, head.version, head.hash
FROM UNNEST($1::TEXT[]) AS wanted (stream)
CROSS JOIN LATERAL (
    SELECT version, hash
    FROM events
    WHERE events.stream = wanted.stream
    ORDER BY version DESC
    LIMIT 1
) AS head
