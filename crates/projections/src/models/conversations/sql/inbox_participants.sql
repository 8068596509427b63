SELECT q.conversation_id, q.person_id
FROM conversation_participants p JOIN conversation_participants q ON q.conversation_id = p.conversation_id
WHERE p.person_id = $1
ORDER BY q.conversation_id, q.person_id
