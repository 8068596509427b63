SELECT f.post_id, f.school_id, f.group_id, f.author_id, f.posted_at, f.state FROM feed_posts f WHERE f.school_id = $1 AND f.live = 1 AND f.state LIKE $2
