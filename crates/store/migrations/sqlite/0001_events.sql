-- The event log of the embedded default: one row per event, position = rowid.
CREATE TABLE events (
    position       INTEGER PRIMARY KEY,      -- global position, assigned by the single writer
    event_id       BLOB    NOT NULL UNIQUE,  -- UUID, 16 bytes
    stream         TEXT    NOT NULL,
    version        INTEGER NOT NULL,         -- 0-based, gap-free per stream
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    occurred_at    INTEGER NOT NULL,         -- microseconds since the Unix epoch (UTC)
    recorded_at    INTEGER NOT NULL,         -- microseconds since the Unix epoch (UTC)
    actor          TEXT    NOT NULL,         -- person:<uuid> | operator | system
    correlation_id BLOB    NOT NULL,
    causation_id   BLOB,
    payload        TEXT    NOT NULL,         -- canonical JSON
    hash           BLOB    NOT NULL,         -- SHA-256 chaining to the stream's previous event
    UNIQUE (stream, version)
);
