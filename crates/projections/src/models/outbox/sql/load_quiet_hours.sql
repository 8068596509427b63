SELECT person_id, schedule FROM {outbox_quiet_hours} WHERE person_id IN ({in})
