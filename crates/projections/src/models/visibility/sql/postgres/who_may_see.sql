SELECT f.post_id, f.school_id, f.group_id, f.author_id, f.posted_at, f.state, g.generation, g.position,
    (SELECT COALESCE(json_agg(json_build_array(c.child_id, c.purpose, c.granted, c.policy_version)), '[]'::json)::text
     FROM visibility_consents c
     WHERE c.child_id = ANY(ARRAY(SELECT jsonb_array_elements_text(item.value -> 'tagged')
                                  FROM jsonb_each(f.state::jsonb -> 'media') AS item))),
    m.live
FROM media_items m JOIN feed_posts f ON f.post_id = m.post_id
LEFT JOIN projection_generations g ON g.name = $2 AND g.active = 1
WHERE m.media_id = $1
