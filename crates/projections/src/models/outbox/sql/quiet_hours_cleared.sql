DELETE FROM {outbox_quiet_hours} WHERE person_id = $1
