-- The planned rows of a batch as parallel arrays: one statement however many rows. The
-- notification carries the last position; PostgreSQL delivers it only if the transaction commits.
WITH inserted AS (
    INSERT INTO events (position, event_id, stream, version, event_type, schema_version,
                        occurred_at, recorded_at, actor, correlation_id, causation_id, payload,
                        hash, log_hash)
    SELECT position, event_id, stream, version, event_type, schema_version,
           -- Taken after the lock was granted: recorded_at keeps to the order of the log.
           occurred_at, statement_timestamp(), actor, correlation_id, causation_id, payload,
           hash, log_hash
    FROM UNNEST($1::BIGINT[], $2::UUID[], $3::TEXT[], $4::BIGINT[], $5::TEXT[], $6::INTEGER[],
                $7::TIMESTAMPTZ[], $8::TEXT[], $9::UUID[], $10::UUID[], $11::TEXT[],
                $12::BYTEA[], $13::BYTEA[])
         AS planned (position, event_id, stream, version, event_type, schema_version,
                     occurred_at, actor, correlation_id, causation_id, payload, hash, log_hash)
    RETURNING position
)
SELECT pg_notify($14, max(position)::TEXT) FROM inserted
