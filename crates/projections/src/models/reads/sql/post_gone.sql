DELETE FROM {read_posts} WHERE post_id = $1
