DELETE FROM {post_reads} WHERE person_id = $1
