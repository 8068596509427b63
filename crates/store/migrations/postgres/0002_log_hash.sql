-- The global chain (docs/decisions/0012-global-chain-and-signed-anchors.md): each event's
-- SHA-256 chaining it to the event at the previous position. The writers compute it on every
-- append, under the global-order lock; rows stored before this migration get theirs, in position
-- order and under the same lock, when a process connects. The partial index finds such rows
-- without a scan.
ALTER TABLE events ADD COLUMN log_hash BYTEA CHECK (octet_length(log_hash) = 32);
CREATE INDEX events_without_log_hash ON events (position) WHERE log_hash IS NULL;
