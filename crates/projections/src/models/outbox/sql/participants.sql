INSERT INTO {outbox_participants} (conversation_id, person_id)
