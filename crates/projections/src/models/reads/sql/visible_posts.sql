SELECT f.post_id, f.school_id, f.group_id
FROM feed_posts f JOIN group_audience a ON a.group_id = f.group_id AND a.person_id = $1
WHERE f.live = 1 AND f.post_id IN ({in})
