SELECT f.post_id, f.school_id, f.group_id, f.author_id, f.posted_at, f.state, f.body
FROM feed_posts f JOIN group_audience a ON a.group_id = f.group_id
WHERE a.person_id = $1 AND f.live = 1 AND ($2 = '' OR f.group_id = $2)
  AND (f.posted_at < $3 OR (f.posted_at = $3 AND f.post_id < $4))
ORDER BY f.posted_at DESC, f.post_id DESC
LIMIT $5
