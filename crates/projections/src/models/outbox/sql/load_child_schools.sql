SELECT child_id, school_id FROM {outbox_children} WHERE child_id IN ({in})
