INSERT INTO {post_reads} (post_id, person_id, read_at)
SELECT p.post_id, $2, $3 FROM {read_posts} p WHERE p.post_id = $1
ON CONFLICT (post_id, person_id) DO NOTHING
