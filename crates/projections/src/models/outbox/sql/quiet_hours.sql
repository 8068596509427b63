INSERT INTO {outbox_quiet_hours} (person_id, schedule, set_at)
