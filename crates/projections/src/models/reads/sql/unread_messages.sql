SELECT m.conversation_id, COUNT(*)
FROM read_messages m
WHERE m.author_id <> $1
  AND NOT EXISTS (SELECT 1 FROM message_reads r WHERE r.message_id = m.message_id AND r.person_id = $2)
  AND m.conversation_id IN ({in})
GROUP BY m.conversation_id
