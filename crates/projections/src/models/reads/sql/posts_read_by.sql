SELECT post_id FROM post_reads WHERE person_id = $1 AND post_id IN ({in})
