SELECT f.post_id, f.school_id, f.group_id, f.author_id, f.posted_at, f.state FROM media_items m JOIN feed_posts f ON f.post_id = m.post_id WHERE m.media_id = $1
