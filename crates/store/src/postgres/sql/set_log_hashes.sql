-- Global hashes for many positions in one statement (parallel arrays).
UPDATE events SET log_hash = filled.log_hash
FROM UNNEST($1::BIGINT[], $2::BYTEA[]) AS filled (position, log_hash)
WHERE events.position = filled.position
