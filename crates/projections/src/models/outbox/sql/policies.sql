INSERT INTO {outbox_policies} (school_id, policy)
