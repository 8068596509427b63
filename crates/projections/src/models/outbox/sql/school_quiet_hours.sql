INSERT INTO {outbox_school_quiet_hours} (school_id, schedule)
