-- The global hash of the event before position $1 (none: $1 is the first position).
SELECT log_hash FROM events WHERE position < $1 ORDER BY position DESC LIMIT 1
