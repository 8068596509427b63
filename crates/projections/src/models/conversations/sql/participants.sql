SELECT person_id FROM conversation_participants WHERE conversation_id = $1 ORDER BY person_id
