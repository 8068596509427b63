SELECT m.post_id, f.group_id, f.school_id, m.live
FROM media_items m JOIN feed_posts f ON f.post_id = m.post_id WHERE m.media_id = $1
