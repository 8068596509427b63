SELECT f.group_id, COUNT(*)
FROM group_audience a JOIN feed_posts f ON f.group_id = a.group_id
WHERE a.person_id = $1 AND f.live = 1 AND f.author_id <> $2
  AND NOT EXISTS (SELECT 1 FROM post_reads r WHERE r.post_id = f.post_id AND r.person_id = $3)
GROUP BY f.group_id
ORDER BY f.group_id
