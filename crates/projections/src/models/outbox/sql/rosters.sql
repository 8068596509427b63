INSERT INTO {outbox_rosters} (school_id, roster)
