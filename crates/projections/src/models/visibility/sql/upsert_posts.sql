INSERT INTO {feed_posts} (post_id, school_id, group_id, author_id, body, posted_at, live, state)
