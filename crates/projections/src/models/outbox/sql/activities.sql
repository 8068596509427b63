INSERT INTO {outbox_activities} (activity_id, school_id, group_id, starts_at)
