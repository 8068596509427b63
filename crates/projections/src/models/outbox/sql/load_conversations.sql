SELECT conversation_id, school_id, child_id FROM {outbox_conversations}
WHERE conversation_id IN ({in})
