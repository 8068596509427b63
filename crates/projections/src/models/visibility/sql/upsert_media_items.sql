INSERT INTO {media_items} (media_id, post_id, ordinal, live)
