DELETE FROM {outbox_guardians} WHERE child_id = $1
