SELECT conversation_id FROM {conversations} WHERE conversation_id IN ({in})
