SELECT posted_at, post_id FROM feed_posts
WHERE group_id = $1 AND live = 1 AND posted_at <= $2
ORDER BY posted_at LIMIT $3
