INSERT INTO {conversation_messages} (position, message_id, conversation_id, author_id, body, at)
