SELECT f.post_id, f.school_id, f.group_id, f.author_id, f.posted_at, f.state, g.generation, g.position,
    (SELECT json_group_array(json_array(c.child_id, c.purpose, c.granted, c.policy_version))
     FROM visibility_consents c
     WHERE c.child_id IN (SELECT t.value FROM json_each(f.state, '$.media') AS item,
                                              json_each(item.value, '$.tagged') AS t)),
    m.live
FROM media_items m JOIN feed_posts f ON f.post_id = m.post_id
LEFT JOIN projection_generations g ON g.name = $2 AND g.active = 1
WHERE m.media_id = $1
