DELETE FROM {outbox_staff} WHERE school_id = $1 AND person_id = $2
