SELECT conversation_id FROM conversations WHERE child_id = $1 ORDER BY started_position, conversation_id
