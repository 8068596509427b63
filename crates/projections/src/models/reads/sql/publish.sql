INSERT INTO {read_posts} (post_id) VALUES ($1) ON CONFLICT (post_id) DO NOTHING
