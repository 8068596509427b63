INSERT INTO {outbox_children} (child_id, school_id)
