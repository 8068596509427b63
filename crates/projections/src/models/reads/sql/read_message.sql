INSERT INTO {message_reads} (message_id, person_id, read_at)
SELECT m.message_id, $2, $3 FROM {read_messages} m WHERE m.message_id = $1
ON CONFLICT (message_id, person_id) DO NOTHING
