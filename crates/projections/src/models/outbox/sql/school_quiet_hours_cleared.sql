DELETE FROM {outbox_school_quiet_hours} WHERE school_id = $1
