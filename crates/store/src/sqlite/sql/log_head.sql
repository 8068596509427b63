-- The log's last event: its position and global hash (the writer chains the next batch from it).
SELECT position, log_hash FROM events ORDER BY position DESC LIMIT 1
