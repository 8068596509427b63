-- The global chain (docs/decisions/0012-global-chain-and-signed-anchors.md): each event's
-- SHA-256 chaining it to the event at the previous position. The writer computes it on every
-- append; rows stored before this migration get theirs, in position order, when the store opens
-- (SQLite has no SHA-256 of its own). The partial index finds such rows without a scan.
ALTER TABLE events ADD COLUMN log_hash BLOB;
CREATE INDEX events_without_log_hash ON events (position) WHERE log_hash IS NULL;
