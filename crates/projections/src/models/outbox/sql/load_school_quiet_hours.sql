SELECT school_id, schedule FROM {outbox_school_quiet_hours} WHERE school_id IN ({in})
