CREATE INDEX {feed_posts}_by_group ON {feed_posts} (group_id, posted_at);
CREATE INDEX {media_items}_by_post ON {media_items} (post_id, ordinal)
