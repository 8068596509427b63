-- The event log on PostgreSQL: one row per event. Positions are assigned by the writers under
-- a transaction-level advisory lock (see docs/decisions/0002-postgres-global-order.md), so
-- commit order is position order and the log has no gaps: no sequence is involved.
CREATE TABLE events (
    position       BIGINT      PRIMARY KEY CHECK (position > 0),
    event_id       UUID        NOT NULL CONSTRAINT events_event_id_key UNIQUE,
    stream         TEXT        NOT NULL,
    version        BIGINT      NOT NULL CHECK (version >= 0),  -- 0-based, gap-free per stream
    event_type     TEXT        NOT NULL,
    schema_version INTEGER     NOT NULL CHECK (schema_version BETWEEN 0 AND 65535),
    occurred_at    TIMESTAMPTZ NOT NULL,  -- microseconds, exactly what the hash covers
    recorded_at    TIMESTAMPTZ NOT NULL,
    actor          TEXT        NOT NULL,  -- person:<uuid> | operator | system
    correlation_id UUID        NOT NULL,
    causation_id   UUID,
    -- Canonical JSON as text, byte for byte what was hashed. Not jsonb: that would reorder
    -- keys and normalise numbers, and the hash would no longer match.
    payload        TEXT        NOT NULL,
    hash           BYTEA       NOT NULL CHECK (octet_length(hash) = 32),
    -- Also the index for reads by stream and for the writers' stream-head look-ups.
    CONSTRAINT events_stream_version_key UNIQUE (stream, version)
);
