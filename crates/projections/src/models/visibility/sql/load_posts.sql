SELECT f.post_id, f.school_id, f.group_id, f.author_id, f.posted_at, f.state, f.body FROM {feed_posts} f WHERE f.post_id IN ({in})
