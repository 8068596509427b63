-- Held until COMMIT or ROLLBACK: one batch at a time, across every process, assigns positions
-- and commits, so commit order is position order.
SELECT pg_advisory_xact_lock($1)
