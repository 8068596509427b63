SELECT message_id FROM message_reads WHERE person_id = $1 AND message_id IN ({in})
