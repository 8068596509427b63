DELETE FROM {post_reads} WHERE post_id = $1
