DELETE FROM {outbox_children} WHERE child_id = $1
