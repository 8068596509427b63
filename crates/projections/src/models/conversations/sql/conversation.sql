SELECT c.conversation_id, c.school_id, c.child_id, c.started_by, c.started_at,
    COALESCE(l.at, c.started_at), COALESCE(l.position, c.started_position), l.author_id,
    (SELECT COUNT(*) FROM conversation_messages n WHERE n.conversation_id = c.conversation_id)
FROM conversations c
LEFT JOIN conversation_messages l ON l.position = (SELECT MAX(m.position) FROM conversation_messages m
    WHERE m.conversation_id = c.conversation_id)
WHERE c.conversation_id = $1
