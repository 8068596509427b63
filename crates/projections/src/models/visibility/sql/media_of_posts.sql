SELECT post_id, media_id FROM media_items WHERE post_id IN ({in}) ORDER BY ordinal, media_id
