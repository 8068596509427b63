SELECT post_id FROM content_removals WHERE remover_id = $1 ORDER BY position
