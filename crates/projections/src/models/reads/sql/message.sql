INSERT INTO {read_messages} (message_id, conversation_id, author_id, position) VALUES ($1, $2, $3, $4)
ON CONFLICT (message_id) DO NOTHING
