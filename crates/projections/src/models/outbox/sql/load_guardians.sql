SELECT child_id, guardian_id FROM {outbox_guardians} WHERE child_id IN ({in})
