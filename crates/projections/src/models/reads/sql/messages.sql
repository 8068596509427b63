SELECT message_id, conversation_id, author_id FROM read_messages WHERE message_id IN ({in})
