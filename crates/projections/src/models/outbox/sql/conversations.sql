INSERT INTO {outbox_conversations} (conversation_id, school_id, child_id)
