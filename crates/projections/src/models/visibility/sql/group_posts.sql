SELECT f.post_id, f.school_id, f.group_id, f.author_id, f.posted_at, f.state, f.body
FROM feed_posts f
WHERE f.group_id = $1 AND f.live = 1
  AND (f.posted_at < $2 OR (f.posted_at = $2 AND f.post_id < $3))
ORDER BY f.posted_at DESC, f.post_id DESC
LIMIT $4
