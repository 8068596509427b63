-- Where the global chain has to be filled in from (rows stored before it existed), if anywhere.
SELECT MIN(position) FROM events WHERE log_hash IS NULL
