SELECT person_id FROM post_reads WHERE post_id = $1 ORDER BY person_id
