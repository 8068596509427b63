SELECT event_id, stream, version, position FROM events WHERE event_id = ANY($1::UUID[])
