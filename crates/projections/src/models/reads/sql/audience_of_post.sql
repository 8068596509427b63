SELECT a.person_id
FROM feed_posts f JOIN group_audience a ON a.group_id = f.group_id
WHERE f.post_id = $1 AND f.live = 1
ORDER BY a.person_id
