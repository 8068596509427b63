SELECT message_id, person_id FROM message_reads WHERE message_id IN ({in}) ORDER BY message_id, person_id
