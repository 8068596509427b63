SELECT child_id, school_id FROM {outbox_children} WHERE school_id IN ({in})
