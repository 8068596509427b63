INSERT INTO {content_removals} (position, remover_id, post_id) VALUES ($1, $2, $3)
