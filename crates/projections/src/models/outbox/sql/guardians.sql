INSERT INTO {outbox_guardians} (child_id, guardian_id)
