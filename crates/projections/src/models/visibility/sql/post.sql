SELECT f.post_id, f.school_id, f.group_id, f.author_id, f.posted_at, f.state, f.body
FROM feed_posts f
WHERE f.post_id = $1 AND f.live = 1
  AND ($2 = '' OR EXISTS (SELECT 1 FROM group_audience a
                          WHERE a.group_id = f.group_id AND a.person_id = $2))
