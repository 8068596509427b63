INSERT INTO {outbox_staff} (school_id, person_id)
