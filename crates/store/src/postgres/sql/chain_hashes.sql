-- The chain hashes of up to $2 events from position $1 on, in position order.
SELECT position, hash FROM events WHERE position >= $1 ORDER BY position LIMIT $2
