DELETE FROM {message_reads} WHERE person_id = $1
