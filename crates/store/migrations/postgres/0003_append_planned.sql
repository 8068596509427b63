-- A planned batch committed in one round trip (docs/decisions/0022-one-round-trip-appends.md).
-- Called as a statement of its own, outside an explicit transaction: it takes the global-order
-- lock, checks under it that the log and the batch's streams are still where the writer planned
-- from, and only then inserts the rows. The statement's implicit transaction commits when it
-- returns, still holding the lock, so commits stay in position order exactly as with
-- BEGIN … COMMIT (docs/decisions/0002-postgres-global-order.md). Returns false, writing
-- nothing, when anything moved: the writer then reads the state afresh and plans again.
CREATE OR REPLACE FUNCTION kring_append_planned(
    lock_key BIGINT,
    last_position BIGINT,
    last_log_hash BYTEA,
    head_streams TEXT[],
    head_versions BIGINT[],
    positions BIGINT[],
    event_ids UUID[],
    streams TEXT[],
    versions BIGINT[],
    event_types TEXT[],
    schema_versions INTEGER[],
    occurred TIMESTAMPTZ[],
    actors TEXT[],
    correlations UUID[],
    causations UUID[],
    payloads TEXT[],
    hashes BYTEA[],
    log_hashes BYTEA[],
    channel TEXT
) RETURNS BOOLEAN
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    current_position BIGINT;
    current_hash BYTEA;
BEGIN
    -- Each statement below must see everything committed before the lock was granted.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'kring_append_planned needs READ COMMITTED, not %',
            current_setting('transaction_isolation');
    END IF;
    PERFORM pg_advisory_xact_lock(lock_key);
    SELECT e.position, e.log_hash INTO current_position, current_hash
    FROM events AS e ORDER BY e.position DESC LIMIT 1;
    IF current_position IS DISTINCT FROM last_position
       OR current_hash IS DISTINCT FROM last_log_hash THEN
        RETURN false;
    END IF;
    -- A stream's head (-1: no events) as planned. Rows are never changed, so the version
    -- pins the hash.
    IF EXISTS (
        SELECT 1
        FROM UNNEST(head_streams, head_versions) AS planned (stream, version)
        LEFT JOIN LATERAL (
            SELECT e.version FROM events AS e
            WHERE e.stream = planned.stream
            ORDER BY e.version DESC LIMIT 1
        ) AS head ON true
        WHERE COALESCE(head.version, -1) <> planned.version
    ) THEN
        RETURN false;
    END IF;
    -- A retried batch may have committed in part: the writer's full path answers it.
    IF EXISTS (SELECT 1 FROM events AS e WHERE e.event_id = ANY(event_ids)) THEN
        RETURN false;
    END IF;
    INSERT INTO events (position, event_id, stream, version, event_type, schema_version,
                        occurred_at, recorded_at, actor, correlation_id, causation_id, payload,
                        hash, log_hash)
    -- clock_timestamp(): taken after the lock was granted, so recorded_at keeps to the order
    -- of the log.
    SELECT p.position, p.event_id, p.stream, p.version, p.event_type, p.schema_version,
           p.occurred_at, clock_timestamp(), p.actor, p.correlation_id, p.causation_id,
           p.payload, p.hash, p.log_hash
    FROM UNNEST(positions, event_ids, streams, versions, event_types, schema_versions,
                occurred, actors, correlations, causations, payloads, hashes, log_hashes)
         AS p (position, event_id, stream, version, event_type, schema_version, occurred_at,
               actor, correlation_id, causation_id, payload, hash, log_hash);
    PERFORM pg_notify(channel, (SELECT max(p) FROM UNNEST(positions) AS p)::TEXT);
    RETURN true;
END
$$;
