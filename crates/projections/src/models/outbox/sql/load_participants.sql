SELECT conversation_id, person_id FROM {outbox_participants}
WHERE conversation_id IN ({in})
