INSERT INTO {conversation_participants} (conversation_id, person_id)
