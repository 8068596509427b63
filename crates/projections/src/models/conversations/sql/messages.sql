SELECT position, message_id, conversation_id, author_id, body, at
FROM conversation_messages WHERE conversation_id = $1 AND position < $2
ORDER BY position DESC LIMIT $3
